"""Complaint cases: lodging (numbered TS-YYYY-NNNNNN), evidence, the exchange log, deadlines,
escalation and resolution. A resolution while linked invoices are still missing is flagged."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import BaseAggregate

from application.invoices.ledger import InvoiceLedger
from application.remedies.case_commands import (
    CaseNotFoundError,
    CaseResult,
    next_number,
    numbering,
    save_case,
)
from domain.base import Provenance
from domain.remedies.attachment_ref import AttachmentRef
from domain.remedies.complaint import Complaint


class ComplaintService:
    def __init__(self, ledger: InvoiceLedger) -> None:
        self.ledger = ledger

    def get(self, tenant_id: str, complaint_id: UUID) -> Complaint:
        try:
            found: object = self.ledger.repository.get(complaint_id)
        except AggregateNotFoundError:
            raise CaseNotFoundError(complaint_id) from None
        if not isinstance(found, Complaint) or found.tenant_id != tenant_id:
            raise CaseNotFoundError(complaint_id)
        return found

    def lodge(
        self,
        tenant_id: str,
        person: str,
        invoice_ids: list[UUID],
        channel: str,
        demand: str,
        reply_due_on: date | None,
        reminder_days: int,
        by: Provenance,
    ) -> CaseResult:
        for invoice_id in invoice_ids:
            self.ledger.get_invoice_state(tenant_id, invoice_id)  # the tenant's, or 404
        complaint_id = uuid.uuid4()

        def decide() -> tuple[list[BaseAggregate[UUID]], Complaint]:
            counter, number = next_number(self.ledger, tenant_id, "TS", complaint_id, by)
            complaint = Complaint.lodge(
                complaint_id,
                tenant_id,
                number,
                person,
                invoice_ids,
                channel,
                demand,
                reply_due_on,
                reminder_days,
                by,
            )
            return [counter, complaint], complaint

        turn = numbering(self.ledger, tenant_id, "TS")
        return save_case(self.ledger, tenant_id, by, decide, turn)

    def _change(
        self,
        by: Provenance,
        tenant_id: str,
        complaint_id: UUID,
        call: Callable[[Complaint], None],
    ) -> CaseResult:
        def decide() -> tuple[list[BaseAggregate[UUID]], Complaint]:
            complaint = self.get(tenant_id, complaint_id)
            call(complaint)
            return [complaint], complaint

        return save_case(self.ledger, tenant_id, by, decide, complaint_id)

    def add_evidence(
        self, tenant_id: str, complaint_id: UUID, ref: AttachmentRef, by: Provenance
    ) -> CaseResult:
        return self._change(by, tenant_id, complaint_id, lambda c: c.add_evidence(by, ref))

    def log_exchange(
        self,
        tenant_id: str,
        complaint_id: UUID,
        at: datetime,
        channel: str,
        counterpart: str,
        counterpart_role: str,
        said: str,
        promised: str,
        promised_reply_on: date | None,
        by: Provenance,
    ) -> CaseResult:
        """Record one exchange; a promised reply date becomes the reply deadline."""
        return self._change(
            by,
            tenant_id,
            complaint_id,
            lambda c: c.log_exchange(
                by, at, channel, counterpart, counterpart_role, said, promised, promised_reply_on
            ),
        )

    def set_reply_deadline(
        self, tenant_id: str, complaint_id: UUID, due_on: date, reminder_days: int, by: Provenance
    ) -> CaseResult:
        return self._change(
            by, tenant_id, complaint_id, lambda c: c.set_reply_deadline(by, due_on, reminder_days)
        )

    def escalate(
        self,
        tenant_id: str,
        complaint_id: UUID,
        step: str,
        to: str,
        note: str,
        due_on: date,
        by: Provenance,
    ) -> CaseResult:
        return self._change(
            by, tenant_id, complaint_id, lambda c: c.escalate(by, step, to, note, due_on)
        )

    def resolve(
        self, tenant_id: str, complaint_id: UUID, outcome: str, text: str, by: Provenance
    ) -> CaseResult:
        """Close it; linked invoices still missing now are recorded, flagging the resolution."""

        def call(c: Complaint) -> None:
            still = [
                UUID(i)
                for i in c.invoice_ids
                if self.ledger.get_invoice_state(tenant_id, UUID(i)).status == "missing"
            ]
            c.resolve(by, outcome, text, still)

        return self._change(by, tenant_id, complaint_id, call)

    def remind(
        self, tenant_id: str, complaint_id: UUID, due_on: date, by: Provenance
    ) -> CaseResult:
        return self._change(by, tenant_id, complaint_id, lambda c: c.remind(by, due_on))

    def flag_reply_overdue(
        self, tenant_id: str, complaint_id: UUID, due_on: date, by: Provenance
    ) -> CaseResult:
        return self._change(by, tenant_id, complaint_id, lambda c: c.flag_reply_overdue(by, due_on))

    def flag_escalation_overdue(
        self, tenant_id: str, complaint_id: UUID, index: int, by: Provenance
    ) -> CaseResult:
        return self._change(
            by, tenant_id, complaint_id, lambda c: c.flag_escalation_overdue(by, index)
        )
