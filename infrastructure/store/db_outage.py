"""Which errors mean "the database cannot be reached or cannot take writes right now": a
connection refused or dropped, a pool timeout, a server shutting down, SQLite busy past its
timeout or its disk full. The API answers them 503 with Retry-After (not 500): the request may
be retried as is (with its Idempotency-Key) once the database is back."""

from __future__ import annotations

import sqlite3

import sqlalchemy.exc
from eventsourcing import persistence as es

# The library's wrappers (they wrap the driver's errors) and SQLAlchemy's.
_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    es.OperationalError,
    es.InterfaceError,
    es.ConnectionUnavailableError,
    es.ConnectionPoolClosedError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    sqlite3.OperationalError,
    ConnectionError,
)
try:  # the PostgreSQL driver, when installed
    import psycopg

    _OUTAGE_TYPES += (psycopg.OperationalError, psycopg.InterfaceError)
    from psycopg_pool import PoolTimeout

    _OUTAGE_TYPES += (PoolTimeout,)
except ImportError:  # pragma: no cover - SQLite-only installs
    pass

_NOT_OUTAGES = ("syntax error", "no such table", "no such column")


def outage_types() -> tuple[type[BaseException], ...]:
    """The error classes to answer 503 (the API registers a handler for each)."""
    return _OUTAGE_TYPES


def is_outage(exc: BaseException) -> bool:
    """True for an error that says the database is unreachable or full, not that the request
    or the code is wrong (the chain of causes is searched)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _OUTAGE_TYPES):
            return not any(text in str(seen).lower() for text in _NOT_OUTAGES)
        seen = seen.__cause__ or seen.__context__
    return False
