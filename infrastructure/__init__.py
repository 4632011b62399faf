"""Adapters: stores, read models, the projection worker, settings and the composition root."""
