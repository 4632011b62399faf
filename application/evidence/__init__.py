"""evidence: what a Merkle leaf is (the canonical bytes of a stored event). Imports: invoices/,
kernel.
"""
