"""monitoring: finding missing invoices. Policy, the acknowledgement ticker and its timer view,
reconciliation, and which events raise alerts. Imports: invoices/, kernel.
"""
