"""remedies: the case services (补录, complaints, lost invoices), their shared numbering and saving,
the case ticker and the cases view. Imports: invoices/, kernel.
"""
