"""invoice_status in SQL: the projection's batch writer and the tenant-scoped reader."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Dialect, Engine, and_, bindparam, delete, func, or_, select
from sqlalchemy.dialects import sqlite

from application.invoices import status_view as fold_module
from application.ports import InvoiceFilter
from domain.calendar import SHANGHAI
from domain.invoices.identity import invoice_id, parse_canonical_key
from domain.invoices.invoice import Invoice
from infrastructure.projections.bulk import columns, load_rows, unnest_params, upsert
from infrastructure.store.tables import (
    invoice_status,
    invoice_status_history,
    status_daily,
    status_entries,
)

COLUMNS = [c.name for c in invoice_status.columns]


class InvoiceStatusProjection:
    """Writes a batch of invoice events into invoice_status (rows loaded once, written once)."""

    name = fold_module.NAME
    topics = fold_module.TOPICS

    def handles(self, event: object) -> bool:
        return fold_module.handles(event)

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        wanted = {e.originator_id for _, e in items}
        for _, e in items:  # a correcting invoice also touches the original's row
            if isinstance(e, Invoice.Issued):
                wanted |= {
                    invoice_id(e.tenant_id, parse_canonical_key(k))
                    for k in fold_module.originals(e)
                }
        rows: dict[UUID, dict[str, Any]] = load_rows(
            conn, invoice_status, "invoice_id", list(wanted)
        )
        changed: dict[UUID, dict[str, Any]] = {}
        failures: list[tuple[int, Any, Exception]] = []
        entered: list[dict[str, Any]] = []
        for position, event in items:
            before = rows.get(event.originator_id)
            try:
                row = fold_module.fold(before, event, position)
            except Exception as e:  # noqa: BLE001 - a poison event is dead-lettered, not fatal
                failures.append((position, event, e))
                continue
            rows[event.originator_id] = changed[event.originator_id] = row
            if isinstance(event, Invoice.Issued):
                for key in fold_module.originals(event):
                    original_id = invoice_id(event.tenant_id, parse_canonical_key(key))
                    if original_id in rows:  # the original may not be in this ledger
                        rows[original_id] = changed[original_id] = fold_module.link_original(
                            rows[original_id], event
                        )
            if before is None or before["status"] != row["status"]:
                day = event.occurred_at.astimezone(SHANGHAI).date()
                entered.append(
                    {
                        "invoice_id": event.originator_id,
                        "position": position,
                        "tenant_id": row["tenant_id"],
                        "day": day,
                        "status": row["status"],
                    }
                )
        upsert(conn, invoice_status, list(changed.values()), "invoice_id")
        if entered:
            _count_entries(conn, entered)
        return failures

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(invoice_status))
        conn.execute(delete(status_daily))
        conn.execute(delete(status_entries))


def _count_entries(conn: Connection, entered: list[dict[str, Any]]) -> None:
    """Record the entries (a repeat is nothing new) and set each touched cell of status_daily
    to the count of its entries: derived, so replaying a batch cannot double it.

    PostgreSQL, in one statement: the entries this batch really added (a repeat inserts
    nothing) are counted into their cells. status_daily and status_entries change only
    together, in this transaction, so the cell stays the count of its entries; and concurrent
    adders (a dead-letter replay beside the runner) each add their own, under the row lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            _pg_entries_sql(conn.dialect), columns(status_entries, ENTRY_COLUMNS, entered, conn)
        )
        return
    insert = sqlite.insert
    conn.execute(insert(status_entries).on_conflict_do_nothing(), entered)
    e = status_entries.c
    for tenant, day, status in sorted({(r["tenant_id"], r["day"], r["status"]) for r in entered}):
        count = conn.execute(
            select(func.count())
            .select_from(status_entries)
            .where(e.tenant_id == tenant, e.day == day, e.status == status)
        ).scalar_one()
        stmt = insert(status_daily).values(tenant_id=tenant, day=day, status=status, entered=count)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "day", "status"], set_={"entered": stmt.excluded.entered}
        )
        conn.execute(stmt)


ENTRY_COLUMNS = ("invoice_id", "position", "tenant_id", "day", "status")


@lru_cache(maxsize=4)
def _pg_entries_sql(dialect: Dialect) -> str:
    return (  # fixed names; the entries go as parameters
        "WITH added AS (INSERT INTO status_entries (invoice_id, position, tenant_id, day, status) "  # noqa: S608
        f"SELECT * FROM unnest({unnest_params(status_entries, ENTRY_COLUMNS, dialect)}) "
        "ON CONFLICT DO NOTHING RETURNING tenant_id, day, status) "
        "INSERT INTO status_daily (tenant_id, day, status, entered) "
        "SELECT tenant_id, day, status, count(*) FROM added GROUP BY tenant_id, day, status "
        "ON CONFLICT (tenant_id, day, status) "
        "DO UPDATE SET entered = status_daily.entered + EXCLUDED.entered"
    )


def _cursor_filter(after: tuple[date, UUID]) -> Any:
    issued_on, invoice_id = after
    return or_(
        invoice_status.c.issued_on < issued_on,
        and_(invoice_status.c.issued_on == issued_on, invoice_status.c.invoice_id < invoice_id),
    )


def _static_filters(filters: InvoiceFilter) -> list[Any]:
    """Filters on what never changes after issuance (issue date, parties, amounts)."""
    c = invoice_status.c
    where: list[Any] = []
    if filters.issued_from:
        where.append(c.issued_on >= filters.issued_from)
    if filters.issued_to:
        where.append(c.issued_on <= filters.issued_to)
    if filters.seller:
        where.append(c.seller_code == filters.seller)
    if filters.buyer:
        where.append(c.buyer_code == filters.buyer)
    if filters.min_total is not None:
        where.append(c.total >= filters.min_total)
    if filters.max_total is not None:
        where.append(c.total <= filters.max_total)
    return where


class SqlInvoiceStatusReader:
    """Tenant-scoped queries on invoice_status; newest issue date first, keyset-paginated."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # The hot read, built once (the GET of one invoice runs it per request).
    _get = select(invoice_status).where(
        invoice_status.c.tenant_id == bindparam("tenant_id"),
        invoice_status.c.invoice_id == bindparam("invoice_id"),
    )

    def get(self, tenant_id: str, invoice_id: UUID) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                self._get, {"tenant_id": tenant_id, "invoice_id": invoice_id}
            ).first()
        return None if row is None else dict(row._mapping)

    def keys_for(self, tenant_id: str, invoice_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The invoice keys people know, for ids the ledger uses (this tenant's only)."""
        if not invoice_ids:
            return {}
        c = invoice_status.c
        query = select(c.invoice_id, c.invoice_key).where(
            c.tenant_id == tenant_id, c.invoice_id.in_(list(set(invoice_ids)))
        )
        with self.engine.connect() as conn:
            return {i: k for i, k in conn.execute(query)}

    def list(
        self, tenant_id: str, filters: InvoiceFilter, limit: int, after: tuple[date, UUID] | None
    ) -> tuple[list[dict[str, Any]], int]:
        c = invoice_status.c
        where = [c.tenant_id == tenant_id, *_static_filters(filters)]
        if filters.status:
            where.append(c.status == filters.status)
        return self._page(select(invoice_status), invoice_status, where, limit, after)

    def list_as_of(
        self,
        tenant_id: str,
        filters: InvoiceFilter,
        at: datetime,
        limit: int,
        after: tuple[date, UUID] | None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Every invoice's status as the ledger knew it at `at`: one query over the validity
        intervals, with the list's filters (`status` being the status then)."""
        c, h = invoice_status.c, invoice_status_history.c
        joined = invoice_status.join(
            invoice_status_history,
            and_(
                h.invoice_id == c.invoice_id,
                h.valid_from <= at,
                or_(h.valid_to.is_(None), h.valid_to > at),
            ),
        )
        where = [c.tenant_id == tenant_id, *_static_filters(filters)]
        if filters.status:
            where.append(h.status == filters.status)
        columns = [col for col in invoice_status.c if col.name != "status"]
        query = select(*columns, h.status.label("status")).select_from(joined)
        return self._page(query, joined, where, limit, after)

    def _page(
        self, query: Any, source: Any, where: list[Any], limit: int, after: tuple[date, UUID] | None
    ) -> tuple[list[dict[str, Any]], int]:
        c = invoice_status.c
        page = query.where(*where)
        if after is not None:
            page = page.where(_cursor_filter(after))
        page = page.order_by(c.issued_on.desc(), c.invoice_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(page)]
            total = conn.execute(select(func.count()).select_from(source).where(*where))
            return rows, int(total.scalar_one())

    def daily(self, tenant_id: str, first: date, last: date) -> list[tuple[date, str, int]]:
        c = status_daily.c
        query = (
            select(c.day, c.status, c.entered)
            .where(c.tenant_id == tenant_id, c.day >= first, c.day <= last)
            .order_by(c.day, c.status)
        )
        with self.engine.connect() as conn:
            return [(d, s, int(n)) for d, s, n in conn.execute(query)]

    def counts(self, tenant_id: str) -> dict[str, int]:
        c = invoice_status.c
        query = (
            select(c.status, func.count())
            .where(c.tenant_id == tenant_id)
            .group_by(c.status)
            .order_by(c.status)
        )
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(query)}
