"""The acknowledgement ticker: turns due timers into `MarkedMissing` events, exactly once.

Exactly once without a lock: before marking, the ticker checks the invoice (still waiting on
the same upload attempt) and the tenant's current maintenance windows (still due), and the
save is optimistic, so a second ticker racing on the same invoice finds it already missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from application.invoices.ledger import InvoiceLedger
from application.monitoring.policy_service import PolicyService
from application.ports import TimerReader
from application.service_errors import InvoiceNotFoundError
from domain.base import Provenance, Source
from domain.errors import InvalidTransitionError
from domain.monitoring.sla import deadline

log = logging.getLogger("fapiao.timers")
TICKER_ACTOR = "system:ack-timer"


@dataclass
class TickReport:
    marked: list[UUID] = field(default_factory=list)
    not_yet_due: int = 0
    already_resolved: int = 0


class AckTimerTicker:
    def __init__(
        self, ledger: InvoiceLedger, timers: TimerReader, policies: PolicyService, batch: int = 500
    ) -> None:
        self.ledger = ledger
        self.timers = timers
        self.policies = policies
        self.batch = batch

    def tick(self) -> TickReport:
        """Mark every invoice whose acknowledgement window has run out as missing."""
        now = self.ledger.clock.now()
        report = TickReport()
        spans: dict[str, list[tuple[datetime, datetime]]] = {}
        for timer in self.timers.due(now, self.batch):
            if timer.tenant_id not in spans:
                spans[timer.tenant_id] = self.policies.maintenance_spans(timer.tenant_id)
            window = timedelta(seconds=timer.window_seconds)
            due = deadline(timer.started_at, window, spans[timer.tenant_id])
            if due > now:  # a maintenance window declared since; the view will catch up
                report.not_yet_due += 1
                continue
            by = Provenance(TICKER_ACTOR, Source.TIMER, now)
            try:
                self.ledger.expire_acknowledgement_window(
                    timer.tenant_id, timer.invoice_id, by, timer.attempt, window, due
                )
            except (InvalidTransitionError, InvoiceNotFoundError):
                report.already_resolved += 1
                continue
            report.marked.append(timer.invoice_id)
        if report.marked:
            log.info("ack timers: %d invoices marked missing", len(report.marked))
        return report
