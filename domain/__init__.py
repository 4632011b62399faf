"""The invoice ledger's domain: aggregates, their events, and the rules they enforce.

Nothing here does I/O, reads a clock or imports a framework; the one library allowed is
`eventsourcing.domain`, the modelling toolkit the aggregates are built on (DESIGN.md 2).
"""
