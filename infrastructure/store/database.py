"""SQLAlchemy engines for the read side, tuned per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event

from infrastructure.settings import Settings

try:  # the event store's pool (psycopg_pool) reconnects with a backoff doubling from 1 s, so a
    # few seconds' outage left it waiting several more: retry every ~0.2 s instead (loopback
    # or LAN connects are cheap), so writes resume within 2 s of the database coming back.
    from psycopg_pool.base import AttemptWithBackoff

    AttemptWithBackoff.INITIAL_DELAY = 0.2
    AttemptWithBackoff.DELAY_BACKOFF = 1.0
except ImportError:  # pragma: no cover - SQLite-only installs
    pass


def pool_sizes(settings: Settings) -> tuple[int, int]:
    """SQLAlchemy's (pool_size, max_overflow) for the settings: the same cap either way, but
    with `pool_keep` every connection opened is kept. SQLAlchemy closes an overflow connection
    when it is returned, so a server under load reconnected per request (1-2 s a connect on
    this machine: the ~1 s p99 of benchmarks/read_bench.py)."""
    if settings.pool_keep:
        return settings.pool_size + settings.max_overflow, 0
    return settings.pool_size, settings.max_overflow


def create_engine_for(
    settings: Settings, *, immediate: bool = False, url: URL | None = None
) -> Engine:
    """An engine on the configured store; `immediate=True` for one that writes.

    On SQLite, `immediate=True` begins every transaction with BEGIN IMMEDIATE: a projection
    transaction reads rows and then writes them, and a deferred one could not upgrade its lock
    when another writer got there first.
    """
    pool_size, max_overflow = pool_sizes(settings)
    if url is not None:  # a read replica: reads only, same pool settings
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_recycle=1800,
            pool_pre_ping=True,  # a replica restarts on its own schedule
            isolation_level="AUTOCOMMIT",
            hide_parameters=True,
        )
    if settings.is_postgres:
        return create_engine(
            settings.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: it costs a round trip per checkout; stale connections are recycled.
            pool_recycle=1800,
            # Reads are single statements: autocommit saves the BEGIN and ROLLBACK round trips
            # (1.6-1.8x on this machine, research/perf-baselines.md 3). Writes keep transactions.
            isolation_level="READ COMMITTED" if immediate else "AUTOCOMMIT",
            # Writes are bounded: waiting for a lock, and any one statement.
            connect_args={
                "options": f"-c lock_timeout={settings.lock_timeout_seconds}s "
                f"-c statement_timeout={settings.write_statement_timeout_seconds}s"
            }
            if immediate
            else {},
            # Parameters carry secrets (webhook secrets, key hashes): never in logs or errors.
            hide_parameters=True,
        )
    engine = create_engine(
        settings.url,
        connect_args={"timeout": 30, "check_same_thread": False},
        hide_parameters=True,
    )
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (SQLAlchemy pysqlite recipe)
        cursor = dbapi_conn.cursor()
        # Switching the journal mode takes a lock and ignores the busy timeout, so only do it
        # when the file is not in WAL mode yet (the library and migrations normally did it).
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine
