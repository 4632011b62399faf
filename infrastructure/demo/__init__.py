"""demo: the simulated tax platform and `fapiao demo` assembled on it. Imports any room; no room
imports it.
"""
