"""Who looked: each history read and each evidence export is an event of its own stream.

Keeping the access log in the event store puts it under the same seal as everything else (a
leaf per record, in the signed checkpoints) and under the store's append-only guard.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance


class AccessRecord(BaseAggregate[UUID]):
    """One recorded access by a person or an ERP key: what they did, to what, when."""

    TOPIC = "fapiao.access_record"

    class Event(LedgerEvent):
        pass

    class Recorded(Event, AggregateCreated):
        """`actor` (the event's) did `action` on `subject`; `details` holds what an export
        needs to be reproduced (bundle id, checkpoint size, the invoices and cases)."""

        TOPIC = "fapiao.access_record.recorded.v1"
        tenant_id: str
        key_id: str | None
        roles: list[str]
        action: str
        subject: str
        details: dict[str, Any]

        def apply(self, record: AccessRecord) -> None:
            record.tenant_id, record.key_id = self.tenant_id, self.key_id
            record.roles, record.action = list(self.roles), self.action
            record.subject, record.details = self.subject, dict(self.details)
            record.actor, record.at = self.actor, self.occurred_at

    def __init__(self) -> None:
        self.tenant_id = ""
        self.key_id: str | None = None
        self.roles: list[str] = []
        self.action = ""
        self.subject = ""
        self.details: dict[str, Any] = {}
        self.actor = ""
        self.at: datetime | None = None

    @classmethod
    def record(
        cls,
        tenant_id: str,
        key_id: str | None,
        roles: list[str],
        action: str,
        subject: str,
        details: dict[str, Any],
        by: Provenance,
        record_id: UUID | None = None,
    ) -> AccessRecord:
        return cls._create(
            cls.Recorded,
            id=record_id or uuid4(),
            **by.fields(),
            tenant_id=tenant_id,
            key_id=key_id,
            roles=sorted(roles),
            action=action,
            subject=subject,
            details=details,
        )
