"""ack_timers in SQL: the projection's batch writer, and the queries the ticker and the overdue
queue run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, case, delete, select

from application.monitoring import ack_timer_view as fold_module
from application.ports import DueTimer
from domain.invoices.invoice import Invoice
from domain.monitoring.tenant_policy import TenantPolicy
from infrastructure.projections.bulk import upsert
from infrastructure.store.tables import ack_timers, maintenance_windows, tenant_policies


class AckTimersProjection:
    name = fold_module.NAME
    topics = fold_module.TOPICS

    def handles(self, event: object) -> bool:
        return fold_module.handles(event)

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        state = fold_module.TimerState()
        invoice_ids = {
            e.originator_id
            for _, e in items
            if isinstance(e, Invoice.Event) and not isinstance(e, Invoice.Issued)
        }
        policy_ids = {e.originator_id for _, e in items if isinstance(e, TenantPolicy.Event)}
        if invoice_ids:
            for r in conn.execute(
                select(ack_timers).where(ack_timers.c.invoice_id.in_(invoice_ids))
            ):
                state.timers[r.invoice_id] = dict(r._mapping)
        tenants = {row["tenant_id"] for row in state.timers.values()}
        tenants |= {e.tenant_id for _, e in items if isinstance(e, Invoice.Issued)}
        query = select(tenant_policies).where(
            tenant_policies.c.tenant_id.in_(tenants) | tenant_policies.c.policy_id.in_(policy_ids)
        )
        for r in conn.execute(query):
            state.policies[r.tenant_id] = r.ack_window_seconds
            state.policy_tenant[r.policy_id] = r.tenant_id
        tenants |= set(state.policy_tenant.values())
        tenants |= {e.tenant_id for _, e in items if isinstance(e, TenantPolicy.Created)}
        for r in conn.execute(
            select(maintenance_windows).where(maintenance_windows.c.tenant_id.in_(tenants))
        ):
            state.windows.setdefault(r.tenant_id, {})[r.window_id] = (
                r.starts_at,
                r.ends_at,
                r.note,
            )
        failures: list[tuple[int, Any, Exception]] = []
        for position, event in items:
            try:
                state.apply(event)
            except Exception as e:  # noqa: BLE001 - dead-lettered by the worker
                failures.append((position, event, e))
        for tenant in state.changed_windows:
            pending = conn.execute(
                select(ack_timers).where(
                    ack_timers.c.tenant_id == tenant, ack_timers.c.due_at.is_not(None)
                )
            )
            for r in pending:
                state.timers.setdefault(r.invoice_id, dict(r._mapping))
            state.move_due_times(tenant)
        upsert(conn, ack_timers, [state.timers[i] for i in state.changed_timers], "invoice_id")
        policy_of = {t: p for p, t in state.policy_tenant.items()}
        upsert(
            conn,
            tenant_policies,
            [
                {"tenant_id": t, "policy_id": policy_of[t], "ack_window_seconds": state.policies[t]}
                for t in state.changed_policies
            ],
            "tenant_id",
        )
        for tenant in state.changed_windows:
            conn.execute(
                delete(maintenance_windows).where(maintenance_windows.c.tenant_id == tenant)
            )
            rows = [
                {"window_id": w, "tenant_id": tenant, "starts_at": a, "ends_at": b, "note": note}
                for w, (a, b, note) in state.windows.get(tenant, {}).items()
            ]
            if rows:
                conn.execute(maintenance_windows.insert(), rows)
        return failures

    def reset(self, conn: Connection) -> None:
        for table in (ack_timers, tenant_policies, maintenance_windows):
            conn.execute(delete(table))


def _due(row: Any) -> DueTimer:
    return DueTimer(
        row.invoice_id, row.tenant_id, row.attempt, row.started_at, row.window_seconds, row.due_at
    )


class SqlTimerReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def due(self, now: datetime, limit: int) -> list[DueTimer]:
        query = (
            select(ack_timers)
            .where(ack_timers.c.due_at <= now)
            .order_by(ack_timers.c.due_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_due(r) for r in conn.execute(query)]

    def awaiting(self, tenant_id: str, limit: int, offset: int = 0) -> tuple[list[DueTimer], int]:
        from sqlalchemy import func

        where = (ack_timers.c.tenant_id == tenant_id, ack_timers.c.due_at.is_not(None))
        query = (
            select(ack_timers)
            .where(*where)
            .order_by(ack_timers.c.due_at, ack_timers.c.invoice_id)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            rows = [_due(r) for r in conn.execute(query)]
            total = conn.execute(select(func.count()).select_from(ack_timers).where(*where))
            return rows, int(total.scalar_one())

    def counts(self, now: datetime) -> tuple[int, int]:
        """(timers running, timers past due and not fired yet), over every tenant."""
        from sqlalchemy import func

        due = ack_timers.c.due_at
        with self.engine.connect() as conn:
            row = conn.execute(select(func.count(due), func.count(case((due <= now, 1))))).one()
        return int(row[0]), int(row[1])

    def overdue_count(self, tenant_id: str, now: datetime) -> int:
        """Uploads whose acknowledgement window has run out, not yet marked missing."""
        from sqlalchemy import func

        query = select(func.count()).where(
            ack_timers.c.tenant_id == tenant_id, ack_timers.c.due_at <= now
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def timer(self, invoice_id: UUID) -> DueTimer | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ack_timers).where(ack_timers.c.invoice_id == invoice_id)
            ).first()
        return None if row is None or row.due_at is None else _due(row)
