"""Lost paper invoice cases (numbered LP-YYYY-NNNNNN)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
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
from domain.errors import InvalidCommandFieldError
from domain.invoices.values import InvoiceType
from domain.remedies.attachment_ref import AttachmentRef
from domain.remedies.lost_invoice import LostInvoiceCase


class LostInvoiceService:
    def __init__(self, ledger: InvoiceLedger) -> None:
        self.ledger = ledger

    def get(self, tenant_id: str, case_id: UUID) -> LostInvoiceCase:
        try:
            found: object = self.ledger.repository.get(case_id)
        except AggregateNotFoundError:
            raise CaseNotFoundError(case_id) from None
        if not isinstance(found, LostInvoiceCase) or found.tenant_id != tenant_id:
            raise CaseNotFoundError(case_id)
        return found

    def record(
        self,
        tenant_id: str,
        invoice_id: UUID,
        lost_on: date,
        place: str,
        circumstances: str,
        by: Provenance,
    ) -> CaseResult:
        invoice = self.ledger.get_invoice_state(tenant_id, invoice_id)
        if not InvoiceType(invoice.invoice_type).is_paper:
            raise InvalidCommandFieldError(
                "invoice",
                f"a {invoice.invoice_type} invoice is not on paper: it cannot be "
                "lost, download it again",
                "paper_only",
            )
        case_id = uuid.uuid4()

        def decide() -> tuple[list[BaseAggregate[UUID]], LostInvoiceCase]:
            counter, number = next_number(self.ledger, tenant_id, "LP", case_id, by)
            case = LostInvoiceCase.record(
                case_id,
                tenant_id,
                number,
                invoice_id,
                lost_on,
                self.ledger.today(),
                place,
                circumstances,
                by,
            )
            return [counter, case], case

        turn = numbering(self.ledger, tenant_id, "LP")
        return save_case(self.ledger, tenant_id, by, decide, turn)

    def change(
        self,
        by: Provenance,
        tenant_id: str,
        case_id: UUID,
        call: Callable[[LostInvoiceCase], None],
    ) -> CaseResult:
        def decide() -> tuple[list[BaseAggregate[UUID]], LostInvoiceCase]:
            case = self.get(tenant_id, case_id)
            call(case)
            return [case], case

        return save_case(self.ledger, tenant_id, by, decide, case_id)

    def request_copy(
        self,
        tenant_id: str,
        case_id: UUID,
        issuer: str,
        requested_on: date,
        note: str,
        by: Provenance,
    ) -> CaseResult:
        return self.change(
            by, tenant_id, case_id, lambda c: c.request_copy(by, issuer, requested_on, note)
        )

    def record_certificate(
        self, tenant_id: str, case_id: UUID, number: str, issued_on: date, by: Provenance
    ) -> CaseResult:
        return self.change(
            by, tenant_id, case_id, lambda c: c.record_certificate(by, number, issued_on)
        )

    def attach(
        self, tenant_id: str, case_id: UUID, step: str, ref: AttachmentRef, by: Provenance
    ) -> CaseResult:
        return self.change(by, tenant_id, case_id, lambda c: c.attach(by, step, ref))

    def close(
        self, tenant_id: str, case_id: UUID, outcome: str, note: str, by: Provenance
    ) -> CaseResult:
        return self.change(by, tenant_id, case_id, lambda c: c.close(by, outcome, note))
