"""web: the console (server-rendered pages, vendored assets, one catalogue of texts)."""
