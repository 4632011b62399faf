"""Use cases: load aggregates, let them decide, save events (with receipts) and answer queries."""
