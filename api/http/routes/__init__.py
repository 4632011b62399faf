"""routes: one module per resource under /v1."""
