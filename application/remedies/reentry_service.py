"""Supplementary-entry applications: numbering, staged review, and re-entry on approval.

Numbering and approval are single atomic saves: the counter with the new application, and the
approved application with every invoice it re-enters. Conflicts are retried a bounded number
of times.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
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
from domain.calendar import WorkingCalendar
from domain.errors import InvalidTransitionError
from domain.invoices.invoice import Invoice
from domain.remedies.attachment_ref import AttachmentRef
from domain.remedies.reentry_application import ReEntryApplication

ELIGIBLE = ("missing", "rejected")


Action = Callable[[ReEntryApplication], list[BaseAggregate[UUID]]]


def only(call: Callable[[ReEntryApplication], None]) -> Action:
    """A decision that changes the application alone."""

    def action(app: ReEntryApplication) -> list[BaseAggregate[UUID]]:
        call(app)
        return []

    return action


class ReEntryService:
    def __init__(
        self,
        ledger: InvoiceLedger,
        review_days: Callable[[str], int],
        calendar: Callable[[str], WorkingCalendar] = lambda _tenant: WorkingCalendar(),
    ) -> None:
        self.ledger = ledger
        self.review_days = review_days
        self.calendar = calendar  # the tenant's working days: public holidays and closures

    def get(self, tenant_id: str, application_id: UUID) -> ReEntryApplication:
        try:
            app: object = self.ledger.repository.get(application_id)
        except AggregateNotFoundError:
            raise CaseNotFoundError(application_id) from None
        if not isinstance(app, ReEntryApplication) or app.tenant_id != tenant_id:
            raise CaseNotFoundError(application_id)
        return app

    def draft(
        self, tenant_id: str, person: str, invoice_ids: list[UUID], reason: str, by: Provenance
    ) -> CaseResult:
        """Open an application (numbered BL-YYYY-NNNNNN) for missing or rejected invoices."""
        for invoice_id in invoice_ids:
            status = self.ledger.get_invoice_state(tenant_id, invoice_id).status.value
            if status not in ELIGIBLE:
                raise InvalidTransitionError(status, "apply for re-entry of")
        application_id = uuid.uuid4()

        def decide() -> tuple[list[BaseAggregate[UUID]], ReEntryApplication]:
            counter, number = next_number(self.ledger, tenant_id, "BL", application_id, by)
            app = ReEntryApplication.draft(
                application_id, tenant_id, number, person, invoice_ids, reason, by
            )
            return [counter, app], app

        turn = numbering(self.ledger, tenant_id, "BL")
        return save_case(self.ledger, tenant_id, by, decide, turn)

    def _change(
        self,
        by: Provenance,
        tenant_id: str,
        application_id: UUID,
        action: Callable[[ReEntryApplication], list[BaseAggregate[UUID]]],
    ) -> CaseResult:
        def decide() -> tuple[list[BaseAggregate[UUID]], ReEntryApplication]:
            app = self.get(tenant_id, application_id)
            return [app, *action(app)], app

        return save_case(self.ledger, tenant_id, by, decide, application_id)

    def correct(
        self,
        tenant_id: str,
        application_id: UUID,
        person: str,
        invoice_id: UUID,
        fields: dict[str, Any],
        by: Provenance,
    ) -> CaseResult:
        return self._change(
            by,
            tenant_id,
            application_id,
            only(lambda a: a.record_correction(by, person, invoice_id, fields)),
        )

    def restate_reason(
        self, tenant_id: str, application_id: UUID, person: str, reason: str, by: Provenance
    ) -> CaseResult:
        """The applicant's reason, while the application is a draft or returned."""
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.record_reason(by, person, reason))
        )

    def attach(
        self, tenant_id: str, application_id: UUID, person: str, ref: AttachmentRef, by: Provenance
    ) -> CaseResult:
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.add_attachment(by, person, ref))
        )

    def submit(
        self, tenant_id: str, application_id: UUID, person: str, by: Provenance
    ) -> CaseResult:
        """Send for review; if anything is missing, every missing item is reported at once.
        The review deadline is the tenant's review days counted in its working days."""
        days = self.review_days(tenant_id)
        due = self.calendar(tenant_id).add_working_days(by.occurred_at, days)
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.submit(by, person, due))
        )

    def review(
        self, tenant_id: str, application_id: UUID, person: str, comment: str, by: Provenance
    ) -> CaseResult:
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.review(by, person, comment))
        )

    def return_to_applicant(
        self, tenant_id: str, application_id: UUID, person: str, reasons: list[str], by: Provenance
    ) -> CaseResult:
        return self._change(
            by,
            tenant_id,
            application_id,
            only(lambda a: a.return_to_applicant(by, person, reasons)),
        )

    def withdraw(
        self, tenant_id: str, application_id: UUID, person: str, reason: str, by: Provenance
    ) -> CaseResult:
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.withdraw(by, person, reason))
        )

    def approve(
        self, tenant_id: str, application_id: UUID, person: str, comment: str, by: Provenance
    ) -> CaseResult:
        """Approve and, in the same save, re-enter every invoice (a new upload attempt each)."""

        def action(app: ReEntryApplication) -> list[BaseAggregate[UUID]]:
            app.approve(by, person, comment)
            invoices: list[BaseAggregate[UUID]] = []
            for invoice_id in app.invoice_ids:
                invoice: Invoice = self.ledger.get_invoice_state(tenant_id, UUID(invoice_id))
                invoice.re_enter(by, app.id, app.number)
                invoices.append(invoice)
            return invoices

        return self._change(by, tenant_id, application_id, action)

    def flag_overdue(
        self, tenant_id: str, application_id: UUID, round_: int, due_at: datetime, by: Provenance
    ) -> CaseResult:
        """The timer's verdict on a review deadline; refused if already flagged or decided."""
        return self._change(
            by, tenant_id, application_id, only(lambda a: a.flag_review_overdue(by, round_, due_at))
        )
