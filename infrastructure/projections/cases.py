"""cases in SQL: the projection's batch writer, the due deadlines, and the per-role queues."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, case, delete, func, or_, select

from application.remedies import case_view as fold_module
from infrastructure.projections.bulk import upsert
from infrastructure.store.tables import cases, streams


class CasesProjection:
    name = fold_module.NAME
    topics = fold_module.TOPICS

    def handles(self, event: object) -> bool:
        return fold_module.handles(event)

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        ids = list({e.originator_id for _, e in items})
        rows: dict[UUID, dict[str, Any]] = {
            r.case_id: dict(r._mapping)
            for r in conn.execute(select(cases).where(cases.c.case_id.in_(ids)))
        }
        changed: dict[UUID, dict[str, Any]] = {}
        failures: list[tuple[int, Any, Exception]] = []
        for position, event in items:
            try:
                row = fold_module.fold(rows.get(event.originator_id), event, position)
            except Exception as e:  # noqa: BLE001 - dead-lettered by the worker
                failures.append((position, event, e))
                continue
            rows[event.originator_id] = changed[event.originator_id] = row
        upsert(conn, cases, list(changed.values()), "case_id")
        return failures

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(cases))


class SqlCaseReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def due(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
        c = cases.c
        query = (
            select(cases)
            .where(
                or_(
                    c.review_due_at <= now,
                    c.reply_remind_at <= now,
                    c.reply_due_at <= now,
                    c.escalation_due_at <= now,
                )
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def queue(
        self,
        tenant_id: str,
        case_type: str,
        statuses: Sequence[str],
        reply_due_by: date | None = None,
        flagged: bool = False,
    ) -> list[dict[str, Any]]:
        c = cases.c
        conditions = [c.status.in_(statuses)]
        if reply_due_by is not None:
            conditions.append(c.reply_due_on <= reply_due_by)
        if flagged:
            conditions.append(c.flagged == 1)
        query = (
            select(cases)
            .where(c.tenant_id == tenant_id, c.case_type == case_type, *conditions)
            .order_by(c.updated_at)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def naming(self, tenant_id: str, invoice_id: UUID) -> list[dict[str, Any]]:
        """The tenant's cases that name this invoice, oldest first."""
        c = cases.c
        query = (
            select(cases)
            .where(c.tenant_id == tenant_id, c.invoice_ids.contains(str(invoice_id)))
            .order_by(c.opened_at)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def listing(
        self, tenant_id: str, case_type: str, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """The tenant's cases of one type, newest first (a status, or all)."""
        c = cases.c
        where = [c.tenant_id == tenant_id, c.case_type == case_type]
        if status:
            where.append(c.status == status)
        query = select(cases).where(*where).order_by(c.opened_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def streams_of(self, tenant_id: str, first_topic: str, limit: int) -> list[UUID]:
        """Ids of the tenant's aggregates that began with `first_topic` (lost-invoice cases,
        reconciliation runs: few per tenant, so they are loaded, not projected)."""
        query = (
            select(streams.c.stream_id)
            .where(streams.c.tenant_id == tenant_id, streams.c.first_topic == first_topic)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [r for (r,) in conn.execute(query)]

    def counts(self, tenant_id: str) -> dict[str, int]:
        c = cases.c
        query = (
            select(c.case_type, c.status, func.count())
            .where(c.tenant_id == tenant_id)
            .group_by(c.case_type, c.status)
        )
        with self.engine.connect() as conn:
            return {f"{t}.{s}": int(n) for t, s, n in conn.execute(query)}

    def deadline_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per kind of case deadline: (being watched, past due and not fired yet)."""
        c = cases.c
        kinds = {
            "review": c.review_due_at,
            "complaint_reply": c.reply_due_at,
            "complaint_reminder": c.reply_remind_at,
            "escalation": c.escalation_due_at,
        }
        columns: list[Any] = []
        for col in kinds.values():
            columns += [func.count(col), func.count(case((col <= now, 1)))]
        with self.engine.connect() as conn:
            row = conn.execute(select(*columns)).one()
        return {kind: (int(row[2 * i]), int(row[2 * i + 1])) for i, kind in enumerate(kinds)}
