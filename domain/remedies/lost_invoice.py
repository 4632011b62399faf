"""Lost paper invoice case: when and where it was lost, the request to the issuer for a copy
of its accounting copy (记账联, stamped with the invoice seal: the voucher since STA 2020 No. 1),
and the tax bureau's certificate (丢失增值税专用发票已报税证明单) where one is obtained."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.errors import InvalidCommandFieldError, InvalidTransitionError
from domain.remedies.attachment_ref import AttachmentRef

STEPS = ("loss", "copy_request", "copy", "certificate")
OUTCOMES = ("copy_obtained", "certificate_obtained", "abandoned")


class LostInvoiceCase(BaseAggregate[UUID]):
    TOPIC = "fapiao.lost_invoice_case"

    class Event(LedgerEvent):
        pass

    class LossRecorded(Event, AggregateCreated):
        """A paper invoice was lost: when, where and how."""

        TOPIC = "fapiao.lost_invoice_case.loss_recorded.v1"
        tenant_id: str
        number: str
        invoice_id: UUID
        lost_on: date
        place: str
        circumstances: str

        def apply(self, case: LostInvoiceCase) -> None:
            case.tenant_id, case.number, case.invoice_id = (
                self.tenant_id,
                self.number,
                self.invoice_id,
            )

    class CopyRequested(Event):
        """The issuer was asked for a stamped copy of its accounting copy."""

        TOPIC = "fapiao.lost_invoice_case.copy_requested.v1"
        issuer: str
        requested_on: date
        note: str

        def apply(self, case: LostInvoiceCase) -> None:
            case.copy_requested = True

    class CertificateRecorded(Event):
        """The tax bureau's certificate for the lost special invoice, by its number."""

        TOPIC = "fapiao.lost_invoice_case.certificate_recorded.v1"
        certificate_number: str
        issued_on: date

        def apply(self, case: LostInvoiceCase) -> None:
            case.certificate_number = self.certificate_number

    class AttachmentAdded(Event):
        """A scan for one step (loss report, request, the copy, the certificate)."""

        TOPIC = "fapiao.lost_invoice_case.attachment_added.v1"
        step: str
        attachment: dict[str, Any]

        def apply(self, case: LostInvoiceCase) -> None:
            case.attachments.append({"step": self.step, **self.attachment})

    class Closed(Event):
        """The case ended: a copy or a certificate was obtained, or it was abandoned."""

        TOPIC = "fapiao.lost_invoice_case.closed.v1"
        outcome: str
        note: str

        def apply(self, case: LostInvoiceCase) -> None:
            case.status = self.outcome

    def __init__(self) -> None:
        self.tenant_id = self.number = ""
        self.invoice_id: UUID | None = None
        self.copy_requested = False
        self.certificate_number: str | None = None
        self.attachments: list[dict[str, Any]] = []
        self.status = "open"

    @classmethod
    def record(
        cls,
        case_id: UUID,
        tenant_id: str,
        number: str,
        invoice_id: UUID,
        lost_on: date,
        today: date,
        place: str,
        circumstances: str,
        by: Provenance,
    ) -> LostInvoiceCase:
        if lost_on > today:
            raise InvalidCommandFieldError("lost_on", "is in the future", "date")
        if not circumstances.strip():
            raise InvalidCommandFieldError("circumstances", "how it was lost", "required")
        return cls._create(
            cls.LossRecorded,
            id=case_id,
            **by.fields(),
            tenant_id=tenant_id,
            number=number,
            invoice_id=invoice_id,
            lost_on=lost_on,
            place=place.strip(),
            circumstances=circumstances.strip(),
        )

    def _open(self, step: str) -> None:
        if self.status != "open":
            raise InvalidTransitionError(self.status, step, "a lost-invoice case")

    def request_copy(self, by: Provenance, issuer: str, requested_on: date, note: str) -> None:
        self._open("request a copy for")
        if not issuer.strip():
            raise InvalidCommandFieldError("issuer", "who was asked", "required")
        self.trigger_event(
            self.CopyRequested,
            **by.fields(),
            issuer=issuer.strip(),
            requested_on=requested_on,
            note=note,
        )

    def record_certificate(self, by: Provenance, number: str, issued_on: date) -> None:
        self._open("record a certificate for")
        if not number.strip():
            raise InvalidCommandFieldError(
                "certificate_number", "the certificate's number", "required"
            )
        self.trigger_event(
            self.CertificateRecorded,
            **by.fields(),
            certificate_number=number.strip(),
            issued_on=issued_on,
        )

    def attach(self, by: Provenance, step: str, ref: AttachmentRef) -> None:
        self._open("attach to")
        if step not in STEPS:
            raise InvalidCommandFieldError("step", f"one of {', '.join(STEPS)}", "enum")
        self.trigger_event(self.AttachmentAdded, **by.fields(), step=step, attachment=ref.to_dict())

    def close(self, by: Provenance, outcome: str, note: str = "") -> None:
        self._open("close")
        if outcome not in OUTCOMES:
            raise InvalidCommandFieldError("outcome", f"one of {', '.join(OUTCOMES)}", "enum")
        if outcome == "certificate_obtained" and self.certificate_number is None:
            raise InvalidCommandFieldError("outcome", "record the certificate first", "order")
        if outcome == "copy_obtained" and not any(a["step"] == "copy" for a in self.attachments):
            raise InvalidCommandFieldError("outcome", "attach the copy first", "order")
        self.trigger_event(self.Closed, **by.fields(), outcome=outcome, note=note)
