"""evidence: the RFC 9162 Merkle tree, signed checkpoints (C2SP note format, with the
stream-heads extension line) and the access record. Imports: invoices/, kernel.
"""
