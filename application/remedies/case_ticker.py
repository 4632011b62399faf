"""The case ticker: review deadlines of applications, reply reminders and deadlines of
complaints, escalation deadlines. Each fires once: the aggregate refuses a second time, and
optimistic saves settle two tickers racing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from application.remedies.complaint_service import ComplaintService
from application.remedies.reentry_service import ReEntryService
from domain.base import Provenance, Source
from domain.errors import DomainError

log = logging.getLogger("fapiao.case_timers")
ACTOR = "system:case-timer"


class DueCases(Protocol):
    def due(self, now: datetime, limit: int = 200) -> list[dict[str, Any]]: ...


@dataclass
class CaseTickReport:
    fired: list[tuple[str, str]] = field(default_factory=list)  # (case number, what)


class CaseTicker:
    def __init__(
        self,
        now: Callable[[], datetime],
        due: DueCases,
        reentry: ReEntryService,
        complaints: ComplaintService,
    ) -> None:
        self.now, self.due_cases = now, due
        self.reentry, self.complaints = reentry, complaints

    def tick(self) -> CaseTickReport:
        now = self.now()
        by = Provenance(ACTOR, Source.TIMER, now)
        report = CaseTickReport()
        for row in self.due_cases.due(now):
            tenant, case_id = row["tenant_id"], UUID(str(row["case_id"]))
            for due_at, what, fire in self._deadlines(row, tenant, case_id, by):
                if due_at is None or due_at > now:
                    continue
                try:
                    fire()
                except DomainError:
                    continue  # already fired, or the case moved on
                report.fired.append((row["number"], what))
        if report.fired:
            log.info("case deadlines fired: %s", report.fired)
        return report

    def _deadlines(
        self, row: dict[str, Any], tenant: str, case_id: UUID, by: Provenance
    ) -> list[tuple[datetime | None, str, Callable[[], Any]]]:
        if row["case_type"] == "reentry":
            return [
                (
                    row["review_due_at"],
                    "review overdue",
                    lambda: self.reentry.flag_overdue(
                        tenant, case_id, row["review_round"], row["review_due_at"], by
                    ),
                )
            ]
        due_on = row["reply_due_on"]
        return [
            (
                row["reply_remind_at"],
                "reply reminder",
                lambda: self.complaints.remind(tenant, case_id, due_on, by),
            ),
            (
                row["reply_due_at"],
                "reply overdue",
                lambda: self.complaints.flag_reply_overdue(tenant, case_id, due_on, by),
            ),
            (
                row["escalation_due_at"],
                "escalation overdue",
                lambda: self.complaints.flag_escalation_overdue(
                    tenant, case_id, row["escalation_index"], by
                ),
            ),
        ]
