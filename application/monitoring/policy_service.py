"""Tenant policy commands: the acknowledgement window and declared maintenance windows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import BaseAggregate

from application.invoices.ledger import InvoiceLedger
from domain.base import Provenance
from domain.calendar import NO_HOLIDAYS, HolidayTable, WorkingCalendar
from domain.monitoring.tenant_policy import TenantPolicy, policy_id


@dataclass(frozen=True)
class MaintenanceWindow:
    window_id: UUID
    starts_at: datetime
    ends_at: datetime
    note: str


@dataclass(frozen=True)
class PolicyView:
    tenant_id: str
    ack_window: timedelta
    windows: list[MaintenanceWindow]
    position: int
    review_working_days: int = 3
    closure_days: dict[date, str] = field(default_factory=dict)
    calendar: str = ""


class PolicyService:
    def __init__(self, ledger: InvoiceLedger, holidays: HolidayTable = NO_HOLIDAYS) -> None:
        self.ledger = ledger
        self.holidays = holidays  # the public calendar (from infrastructure)

    def get_policy(self, tenant_id: str) -> PolicyView:
        """The policy in force (the defaults if the tenant never changed it)."""
        return self._view(self._load(tenant_id))

    def _view(self, policy: TenantPolicy) -> PolicyView:
        windows = sorted(
            (MaintenanceWindow(w, a, b, note) for w, (a, b, note) in policy.windows.items()),
            key=lambda w: w.starts_at,
        )
        return PolicyView(
            policy.tenant_id,
            timedelta(seconds=policy.ack_window_seconds),
            windows,
            0,
            policy.review_working_days,
            dict(sorted(policy.closure_days.items())),
            self._calendar(policy).describe(),
        )

    def review_days(self, tenant_id: str) -> int:
        return self._load(tenant_id).review_working_days

    def working_calendar(self, tenant_id: str) -> WorkingCalendar:
        """The tenant's working days: public holidays, make-up days and its closure days."""
        return self._calendar(self._load(tenant_id))

    def _calendar(self, policy: TenantPolicy) -> WorkingCalendar:
        return WorkingCalendar(self.holidays, frozenset(policy.closure_days))

    def declare_closure_days(
        self, tenant_id: str, days: list[date], note: str, by: Provenance
    ) -> PolicyView:
        """Company closure days: not working days for deadlines set from now on."""
        return self._change(tenant_id, by, lambda p: p.declare_closure_days(by, days, note))

    def withdraw_closure_days(self, tenant_id: str, days: list[date], by: Provenance) -> PolicyView:
        return self._change(tenant_id, by, lambda p: p.withdraw_closure_days(by, days))

    def set_review_days(self, tenant_id: str, days: int, by: Provenance) -> PolicyView:
        """Working days within which a supplementary-entry application must be decided."""
        return self._change(tenant_id, by, lambda p: p.set_review_days(by, days))

    def maintenance_spans(self, tenant_id: str) -> list[tuple[datetime, datetime]]:
        return [(a, b) for a, b, _ in self._load(tenant_id).windows.values()]

    def set_ack_window(self, tenant_id: str, window: timedelta, by: Provenance) -> PolicyView:
        """Applies to uploads from now on; running timers keep the window they started with."""
        return self._change(tenant_id, by, lambda p: p.set_ack_window(by, window))

    def declare_maintenance(
        self, tenant_id: str, starts_at: datetime, ends_at: datetime, note: str, by: Provenance
    ) -> tuple[UUID, PolicyView]:
        """Time inside the window stops counting toward every acknowledgement window."""
        window_id = uuid.uuid4()
        view, body = self._run(
            tenant_id,
            by,
            lambda p: p.declare_maintenance(by, window_id, starts_at, ends_at, note),
            {"window_id": str(window_id)},
        )
        return UUID(body["window_id"]), view

    def withdraw_maintenance(self, tenant_id: str, window_id: UUID, by: Provenance) -> PolicyView:
        return self._change(tenant_id, by, lambda p: p.withdraw_maintenance(by, window_id))

    def _load(self, tenant_id: str) -> TenantPolicy:
        try:
            return cast(TenantPolicy, self.ledger.repository.get(policy_id(tenant_id)))
        except AggregateNotFoundError:
            policy = TenantPolicy.__new__(TenantPolicy)
            TenantPolicy.__init__(policy)
            policy.tenant_id = tenant_id
            return policy

    def _change(
        self, tenant_id: str, by: Provenance, decide: Callable[[TenantPolicy], None]
    ) -> PolicyView:
        return self._run(tenant_id, by, decide, {})[0]

    def _run(
        self,
        tenant_id: str,
        by: Provenance,
        decide: Callable[[TenantPolicy], None],
        answer: dict[str, Any],
    ) -> tuple[PolicyView, dict[str, Any]]:
        """One policy change through the ledger's command loop; a repeated Idempotency-Key
        answers with the policy as the first request left it (and the same `answer`)."""

        def decision() -> tuple[list[BaseAggregate[UUID]], dict[str, Any]]:
            try:
                policy = cast(TenantPolicy, self.ledger.repository.get(policy_id(tenant_id)))
            except AggregateNotFoundError:
                policy = TenantPolicy.start(tenant_id, by)
            decide(policy)
            return [policy], {**answer, "version": policy.version}

        outcome = self.ledger.run_once(tenant_id, by, decision, serialize=policy_id(tenant_id))
        body = outcome.body
        policy = cast(
            TenantPolicy, self.ledger.repository.get(policy_id(tenant_id), version=body["version"])
        )
        return replace(self._view(policy), position=outcome.position), body
