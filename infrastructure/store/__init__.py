"""store: the kernel's persistence: tables (one metadata for both stores), engines, the library's
recorders with recorded_at, and the migrations runner.
"""
