from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import SettableClock


def test_settable_clock_moves_only_when_told_and_stays_aware() -> None:
    clock = SettableClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    clock.advance(timedelta(hours=3))
    assert clock.now() == datetime(2026, 1, 1, 3, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 2))  # noqa: DTZ001 - the point of the test
