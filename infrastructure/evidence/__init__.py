"""evidence: the sealing projection and Merkle log, the checkpoint signer, evidence bundles and the
access log. Imports: invoices/, kernel.
"""
