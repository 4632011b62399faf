"""Fakes for external ports only (STYLE.md 8). Each is a small real class with its own test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SettableClock:
    """A clock the test moves by hand; always aware UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("SettableClock needs an aware datetime")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("SettableClock needs an aware datetime")
        self._now = moment
