"""The edge: the HTTP API (FastAPI) and the `fapiao` CLI (typer)."""
