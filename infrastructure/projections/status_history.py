"""invoice_status_history in SQL: the raw-row projection that keeps validity intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from sqlalchemy import Connection, delete, select, update

from application.invoices import status_history_view as fold_module
from application.invoices.ledger import InvoiceLedger
from application.ports import StoredEventRow
from infrastructure.store.tables import invoice_status_history as history


class StatusHistoryProjection:
    name = fold_module.NAME
    topics: frozenset[str] = frozenset()
    raw = True  # needs each event's recorded_at

    def __init__(self, ledger: InvoiceLedger) -> None:
        self.ledger = ledger

    def handles(self, event: object) -> bool:
        return True

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, StoredEventRow]]
    ) -> list[tuple[int, Any, Exception]]:
        rows = [r for _, r in items if r.topic in fold_module.TOPICS]
        if not rows:
            return []
        ids = list({r.originator_id for r in rows})
        current: dict[UUID, dict[str, Any]] = {
            r.invoice_id: dict(r._mapping)
            for r in conn.execute(
                select(history).where(
                    history.c.invoice_id.in_(ids), history.c.to_position.is_(None)
                )
            )
        }
        failures: list[tuple[int, Any, Exception]] = []
        opened: list[dict[str, Any]] = []
        for row in rows:
            try:
                event = self.ledger.mapper.to_domain_event(
                    StoredEvent(row.originator_id, row.originator_version, row.topic, row.state)
                )
                status = fold_module.status_after(event)
            except Exception as e:  # noqa: BLE001 - dead-lettered by the worker
                failures.append((row.position, row, e))
                continue
            previous = current.get(row.originator_id)
            if previous is not None and previous["status"] == status:
                continue
            if previous is not None:
                previous.update(to_position=row.position, valid_to=row.recorded_at)
                if not previous.get("_new"):  # new ones are inserted below, end and all
                    conn.execute(
                        update(history)
                        .where(
                            history.c.invoice_id == previous["invoice_id"],
                            history.c.from_position == previous["from_position"],
                        )
                        .values(to_position=row.position, valid_to=row.recorded_at)
                    )
            tenant = getattr(event, "tenant_id", None) or (previous or {}).get("tenant_id")
            interval = {
                "invoice_id": row.originator_id,
                "from_position": row.position,
                "tenant_id": tenant,
                "status": status,
                "to_position": None,
                "valid_from": row.recorded_at,
                "valid_to": None,
                "_new": True,
            }
            current[row.originator_id] = interval
            opened.append(interval)
        if opened:
            conn.execute(
                history.insert(), [{k: v for k, v in i.items() if k != "_new"} for i in opened]
            )
        return failures

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(history))
