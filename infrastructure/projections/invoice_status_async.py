"""GET one invoice on the event loop: the same primary-key SELECT as SqlInvoiceStatusReader.get,
through a small psycopg async pool, so the hot read needs no worker thread (the thread hand-off
and the threads' fight for the GIL were most of its latency under load).

Only where it answers exactly what the thread path would: PostgreSQL, no read replica (the
replica's lag and fallback live on the thread path), no SQL tracing (the traces are hooked on
the SQLAlchemy engines). A request with `consistent_after` takes the thread path too (it may
wait). The row goes through the columns' own SQLAlchemy result processors, so its values (UTC
datetimes, money quantized to cents) are the thread path's, and so is the JSON
(tests/integration/test_async_status_reader.py compares the bytes).

The pool is lazy (opened on the first read, at most `MAX_CONNECTIONS`) and closed with the app;
a database that is down raises psycopg's OperationalError or the pool's PoolTimeout, which the
API answers 503 like any outage (infrastructure/store/db_outage.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Column, Engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

from infrastructure.projections.invoice_status import SqlInvoiceStatusReader
from infrastructure.settings import Settings

_DIALECT = psycopg_dialect()
MAX_CONNECTIONS = 4  # per process: one event loop keeps a handful of primary-key reads in flight
APPLICATION_NAME = "fapiao-get-invoice"
# How long a read waits for a connection. A read takes a millisecond or so, so only a database
# that is down (the pool retrying its connects in the background) or a server far past its
# capacity waits this long; then it is a 503 with Retry-After, not a request held for 30 s.
ACQUIRE_TIMEOUT = 5.0


def _compiled() -> tuple[str, list[Column[Any]]]:
    """The thread path's statement as psycopg SQL, and its columns."""
    statement = SqlInvoiceStatusReader._get  # noqa: SLF001 - the same statement, on purpose
    return str(statement.compile(dialect=_DIALECT)), list(statement.selected_columns)  # type: ignore[arg-type]


def _processors(
    columns: list[Column[Any]], description: Sequence[Any]
) -> list[Callable[[Any], Any] | None]:
    """Each column's SQLAlchemy result processor for the type the server sent (None where the
    driver's value is already the one SQLAlchemy hands over)."""
    return [
        c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, d.type_code)
        for c, d in zip(columns, description, strict=True)
    ]


class AsyncStatusReader:
    """One invoice_status row by tenant and id, awaited on the running event loop."""

    def __init__(self, conninfo: str, timeout: float = ACQUIRE_TIMEOUT) -> None:
        self._conninfo, self._timeout = conninfo, timeout
        self._sql, self._columns = _compiled()
        self._names = [c.name for c in self._columns]
        self._process: list[Callable[[Any], Any] | None] | None = None  # from the first answer
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()
        self.queries = 0  # statements sent (the one-query-per-GET tests count them)

    @classmethod
    def serving(cls, settings: Settings, engine: Engine) -> AsyncStatusReader | None:
        """The reader for a cell whose GET it may answer, else None (the thread path)."""
        if not settings.is_postgres or settings.read_url is not None or settings.otel_tracing:
            return None
        url = engine.url.set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False))

    async def _connections(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                        self._conninfo,
                        min_size=1,
                        max_size=MAX_CONNECTIONS,
                        timeout=self._timeout,
                        # one statement: no BEGIN or ROLLBACK; named for pg_stat_activity
                        kwargs={"autocommit": True, "application_name": APPLICATION_NAME},
                        open=False,
                        name=APPLICATION_NAME,
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    async def get(self, tenant_id: str, invoice_id: UUID) -> dict[str, Any] | None:
        pool = await self._connections()
        async with pool.connection() as conn:
            self.queries += 1
            cursor = await conn.execute(
                self._sql, {"tenant_id": tenant_id, "invoice_id": invoice_id}
            )
            row = await cursor.fetchone()
            if self._process is None:
                assert cursor.description is not None  # a SELECT's answer describes its columns
                self._process = _processors(self._columns, cursor.description)
        if row is None:
            return None
        return {
            name: value if process is None else process(value)
            for name, value, process in zip(self._names, row, self._process, strict=True)
        }

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
