"""projections: our projection worker, leadership (advisory lock or file lock), and the SQL views
it writes. A view writer may import the room it serves.
"""
