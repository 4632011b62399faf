"""evidence: the RFC 9162 Merkle tree and signed checkpoints (C2SP note format). Imports:
invoices/, kernel.
"""
