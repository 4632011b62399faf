"""Read models as pure folds: (current row, event, position) -> new row. No SQL here."""

from __future__ import annotations


def events_of(aggregate: type) -> tuple[type, ...]:
    """The stored event classes declared on an aggregate (those with an explicit TOPIC)."""
    return tuple(v for v in vars(aggregate).values() if isinstance(v, type) and "TOPIC" in vars(v))


def topics_of(classes: tuple[type, ...]) -> frozenset[str]:
    """Stored topics of these classes: the worker skips decoding every other event."""
    return frozenset(vars(c)["TOPIC"] for c in classes)
