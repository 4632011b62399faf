"""evidence: the sealing projection and Merkle log, the checkpoint signer, BagIt zips, bundle
export and the offline verifier, and the access log. Imports: invoices/, kernel.
"""
