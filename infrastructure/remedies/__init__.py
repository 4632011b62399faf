"""remedies: the content-addressed attachment store. Imports: invoices/, kernel."""
