"""invoices: the shared core. The ledger application, the lifecycle commands, and the folds of the
status and status-history views. Imports: invoices/, kernel.
"""
