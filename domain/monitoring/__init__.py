"""monitoring: finding missing invoices. Tenant policy, acknowledgement windows, platform export
rows and reconciliation runs. Imports: invoices/, kernel.
"""
