"""Clocks: the real one, and a simulated one that the platform simulation (and tests) move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """A clock moved by hand; always aware UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("SimulatedClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("SimulatedClock needs an aware datetime")
        self._now = moment
