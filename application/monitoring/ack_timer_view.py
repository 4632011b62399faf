"""ack_timers: per invoice, whether an acknowledgement is awaited and when it falls due.

A row exists from issuance (so the tenant is known); `due_at` is set by an upload attempt and
cleared by whatever ends the wait. The fold also keeps each tenant's policy, so a due time uses
the policy in force at that point of the log and moves when maintenance windows change later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.topics import events_of, topics_of
from domain.invoices.invoice import Invoice
from domain.monitoring.sla import deadline
from domain.monitoring.tenant_policy import DEFAULT_ACK_WINDOW, TenantPolicy

NAME = "ack_timers"
ENDS_WAIT = (
    Invoice.Acknowledged,
    Invoice.Rejected,
    Invoice.SubmissionFailed,
    Invoice.MarkedMissing,
    Invoice.Voided,
)
INVOICE_EVENTS = (Invoice.Issued, Invoice.Submitted, Invoice.ReEntered, *ENDS_WAIT)


EVENTS = (*INVOICE_EVENTS, *events_of(TenantPolicy))
TOPICS = topics_of(EVENTS)


def handles(event: object) -> bool:
    return isinstance(event, EVENTS)


Window = tuple[datetime, datetime, str]


@dataclass
class TimerState:
    """The rows a batch touches (loaded by the caller); `apply` folds one event into them."""

    timers: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, int] = field(default_factory=dict)
    policy_tenant: dict[UUID, str] = field(default_factory=dict)
    windows: dict[str, dict[UUID, Window]] = field(default_factory=dict)
    changed_timers: set[UUID] = field(default_factory=set)
    changed_policies: set[str] = field(default_factory=set)
    changed_windows: set[str] = field(default_factory=set)

    def due(self, tenant: str, started_at: datetime, window_seconds: int) -> datetime:
        spans = [(a, b) for a, b, _ in self.windows.get(tenant, {}).values()]
        return deadline(started_at, timedelta(seconds=window_seconds), spans)

    def apply(self, event: Any) -> None:
        if isinstance(event, Invoice.Issued):
            self.timers[event.originator_id] = {
                "invoice_id": event.originator_id,
                "tenant_id": event.tenant_id,
                "attempt": 0,
                "started_at": None,
                "window_seconds": None,
                "due_at": None,
            }
            self.changed_timers.add(event.originator_id)
        elif isinstance(event, Invoice.Submitted | Invoice.ReEntered):
            row = self.timers[event.originator_id]
            window = self.policies.get(row["tenant_id"], int(DEFAULT_ACK_WINDOW.total_seconds()))
            row.update(
                attempt=event.attempt,
                started_at=event.occurred_at,
                window_seconds=window,
                due_at=self.due(row["tenant_id"], event.occurred_at, window),
            )
            self.changed_timers.add(event.originator_id)
        elif isinstance(event, ENDS_WAIT):
            self.timers[event.originator_id]["due_at"] = None
            self.changed_timers.add(event.originator_id)
        elif isinstance(event, TenantPolicy.Created):
            self.policy_tenant[event.originator_id] = event.tenant_id
            self.policies[event.tenant_id] = event.ack_window_seconds
            self.changed_policies.add(event.tenant_id)
        elif isinstance(event, TenantPolicy.AckWindowSet):
            tenant = self.policy_tenant[event.originator_id]
            self.policies[tenant] = event.ack_window_seconds
            self.changed_policies.add(tenant)
        elif isinstance(event, TenantPolicy.MaintenanceWindowDeclared):
            tenant = self.policy_tenant[event.originator_id]
            self.windows.setdefault(tenant, {})[event.window_id] = (
                event.starts_at,
                event.ends_at,
                event.note,
            )
            self.changed_windows.add(tenant)
        elif isinstance(event, TenantPolicy.MaintenanceWindowWithdrawn):
            tenant = self.policy_tenant[event.originator_id]
            self.windows.setdefault(tenant, {}).pop(event.window_id, None)
            self.changed_windows.add(tenant)

    def move_due_times(self, tenant: str) -> None:
        """After `tenant`'s windows changed: recompute its pending timers (loaded by caller)."""
        for invoice_id, row in self.timers.items():
            if row["tenant_id"] == tenant and row["due_at"] is not None:
                row["due_at"] = self.due(tenant, row["started_at"], row["window_seconds"])
                self.changed_timers.add(invoice_id)
