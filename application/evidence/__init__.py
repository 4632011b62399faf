"""evidence: what the log commits to (event and stream-head leaves), the guard that proves a
checkpoint before it is signed, the catalog of our own event topics, and what a bundle's
readable files say. Imports: invoices/, kernel.
"""
