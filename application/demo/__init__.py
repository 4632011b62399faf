"""demo: the seeded demo tenant and the month through a lossy platform. Imports any room; no room
imports it.
"""
