"""Who looked: history reads by auditor and compliance keys, and every evidence export.

Each access is saved as an `AccessRecord` event, so the seal covers the access log like any
other event; the `access_log` table is its projection (append-only, one row per event).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from application.access import Principal, Role
from application.invoices.ledger import InvoiceLedger
from application.service_errors import ApplicationError
from domain.base import Provenance, Source
from domain.evidence.access_record import AccessRecord
from infrastructure.store.tables import access_log

WATCHED = frozenset({Role.AUDITOR, Role.COMPLIANCE})


class AccessLogRebuildRefusedError(ApplicationError):
    """The access log is append-only."""


class AccessLog:
    def __init__(
        self, ledger: InvoiceLedger, engine: Engine, catch_up: Callable[[], None] = lambda: None
    ) -> None:
        self.ledger, self.engine, self.catch_up = ledger, engine, catch_up

    def record(self, principal: Principal, action: str, subject: str, at: datetime) -> None:
        """Kept for auditor and compliance keys (the people whose reading is itself evidence)."""
        if not principal.roles & WATCHED:
            return
        self.ledger.save(self.entry(principal, action, subject, {}, at))

    def entry(
        self,
        principal: Principal | None,
        action: str,
        subject: str,
        details: dict[str, Any],
        at: datetime,
        by: Provenance | None = None,
        record_id: UUID | None = None,
    ) -> AccessRecord:
        """An access record to save (with other aggregates, e.g. an idempotency receipt).
        Without a principal, `by` says who (the command line)."""
        if principal is not None:
            by = by or Provenance(principal.actor, Source.API, at)
            key, roles = principal.key_id, sorted(principal.roles)
            tenant = principal.tenant_id
        elif by is not None:
            key, roles, tenant = None, [], str(details["tenant"])
        else:
            raise ValueError("an access without an API key must name its actor")
        return AccessRecord.record(tenant, key, roles, action, subject, details, by, record_id)

    def get(self, record_id: UUID) -> AccessRecord:
        record = self.ledger.repository.get(record_id)
        if not isinstance(record, AccessRecord):
            raise LookupError(f"{record_id} is not an access record")
        return record

    def list(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """The tenant's accesses, newest first (the projection caught up first)."""
        self.catch_up()
        c = access_log.c
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    select(access_log)
                    .where(c.tenant_id == tenant_id)
                    .order_by(c.at.desc())
                    .limit(limit)
                )
            ]


class AccessLogProjection:
    """Folds access-record events into `access_log`, one row each, never changed."""

    name = "access_log"
    topics = frozenset({AccessRecord.Recorded.TOPIC})

    def handles(self, event: object) -> bool:
        return isinstance(event, AccessRecord.Recorded)

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        rows = [
            {
                "access_id": event.originator_id,
                "tenant_id": event.tenant_id,
                "key_id": event.key_id,
                "actor": event.actor,
                "roles": ",".join(event.roles),
                "action": event.action,
                "subject": event.subject,
                "at": event.occurred_at,
                "position": position,
            }
            for position, event in items
        ]
        if rows:
            conn.execute(access_log.insert(), rows)
        return []

    def reset(self, conn: Connection) -> None:
        raise AccessLogRebuildRefusedError(
            "the access log is append-only and is never emptied or rebuilt"
        )
