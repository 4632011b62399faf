"""remedies: supplementary entry (补录), complaints, lost paper invoices, case numbering and
attachment references. Imports: invoices/, kernel.
"""
