"""The real clock; tests use a settable one (tests/fakes.py) through the same `Clock` port."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
