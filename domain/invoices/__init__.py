"""invoices: the shared core. The Invoice aggregate, issuance rules, identity (invoice keys,
taxpayer codes), statuses and values. Imports: the kernel.
"""
