"""monitoring: platform export reading, the reconciliation staging store, callback signatures and
the webhook outbox. Imports: invoices/, kernel.
"""
