"""FAPIAO_POOL_KEEP: a server's pools keep the connections they open (the same cap), where by
default SQLAlchemy closes the overflow ones on return and a busy server reconnects per request."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import text

from infrastructure.settings import Settings
from infrastructure.store.database import create_engine_for, pool_sizes


def test_keeping_moves_the_overflow_into_the_pool_under_the_same_cap() -> None:
    plain = Settings(pool_size=4, max_overflow=8)
    assert pool_sizes(plain) == (4, 8)
    assert pool_sizes(plain.model_copy(update={"pool_keep": True})) == (12, 0)
    assert Settings().pool_keep is False  # tests and one-shot commands: off


@pytest.mark.postgres
@pytest.mark.parametrize(("keep", "held"), [(False, 2), (True, 5)])
def test_connections_opened_under_load_stay_open_only_when_kept(
    pg_settings: Settings, keep: bool, held: int
) -> None:
    settings = pg_settings.model_copy(update={"pool_size": 2, "max_overflow": 3, "pool_keep": keep})
    engine = create_engine_for(settings)
    try:
        with ExitStack() as stack:  # five requests at once: every connection the cap allows
            for _ in range(5):
                conn = stack.enter_context(engine.connect())
                assert conn.execute(text("SELECT 1")).scalar() == 1
        assert engine.pool.checkedin() == held  # type: ignore[attr-defined]
        with ExitStack() as stack:  # and no more than the cap, either way
            for _ in range(5):
                stack.enter_context(engine.connect())
            assert engine.pool.checkedout() == 5  # type: ignore[attr-defined]
    finally:
        engine.dispose()
