"""Supplementary-entry application (补录申请): re-enter missing or rejected invoices after a
staged review. Drafted by an applicant, reviewed by a reviewer, approved by an approver (three
different people), or returned with reasons to the applicant, who may resubmit; or withdrawn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.calendar import MON_FRI, WorkingDeadline
from domain.errors import (
    DomainError,
    InvalidCommandFieldError,
    InvalidFieldError,
    InvalidTransitionError,
    SeparationOfDutiesError,
    ValidationFailedError,
)
from domain.remedies.attachment_ref import AttachmentRef

CORRECTABLE = (
    "number",
    "code",
    "issued_on",
    "amount",
    "tax",
    "total",
    "buyer_code",
    "buyer_name",
    "seller_code",
    "seller_name",
    "invoice_type",
    "remarks",
)
DOCUMENT_TYPES = ("application/pdf", "application/ofd", "application/xml")
EDITABLE = ("drafted", "returned")  # the applicant may still change it


class ReEntryApplication(BaseAggregate[UUID]):
    TOPIC = "fapiao.reentry_application"

    class Event(LedgerEvent):
        pass

    class Drafted(Event, AggregateCreated):
        """An applicant opened application `number` for these missing or rejected invoices."""

        TOPIC = "fapiao.reentry_application.drafted.v1"
        tenant_id: str
        number: str
        applicant: str
        invoice_ids: list[str]
        reason: str

        def apply(self, app: ReEntryApplication) -> None:
            app.tenant_id, app.number, app.applicant = self.tenant_id, self.number, self.applicant
            app.invoice_ids = list(self.invoice_ids)
            app.reason = self.reason

    class CorrectionRecorded(Event):
        """The fields of one invoice as they should be entered (replacing earlier ones)."""

        TOPIC = "fapiao.reentry_application.correction_recorded.v1"
        invoice_id: str
        fields: dict[str, str]

        def apply(self, app: ReEntryApplication) -> None:
            app.corrections[self.invoice_id] = dict(self.fields)

    class ReasonRecorded(Event):
        """The applicant stated (or restated) why the invoices need re-entry."""

        TOPIC = "fapiao.reentry_application.reason_recorded.v1"
        reason: str

        def apply(self, app: ReEntryApplication) -> None:
            app.reason = self.reason

    class AttachmentAdded(Event):
        """Evidence attached: the event keeps the file's hash, name, type and size only."""

        TOPIC = "fapiao.reentry_application.attachment_added.v1"
        attachment: dict[str, Any]

        def apply(self, app: ReEntryApplication) -> None:
            app.attachments.append(dict(self.attachment))

    class Submitted(Event):
        """The applicant sent the complete application for review (submission `round`); it
        must be decided by `review_due_at` (the tenant's review deadline when submitted),
        counted in working days with `review_calendar`; `review_calendar_note` says when some
        days were counted Monday to Friday (past the holiday calendar's years).
        v2 added `review_due_at` (v1 events read as having none); v3 added the calendar (v2
        deadlines were counted Monday to Friday)."""

        TOPIC = "fapiao.reentry_application.submitted.v1"
        class_version = 3
        round: int
        review_due_at: datetime | None
        review_calendar: str
        review_calendar_note: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["review_due_at"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["review_calendar"] = MON_FRI
            state["review_calendar_note"] = (
                f"counted {MON_FRI}: submitted before public holidays were taken into account"
                if state["review_due_at"] is not None
                else ""
            )

        def apply(self, app: ReEntryApplication) -> None:
            app.status, app.round, app.reviewer = "submitted", self.round, None
            app.overdue_flagged = False
            app.review_due_at = self.review_due_at
            app.review_calendar = self.review_calendar
            app.review_calendar_note = self.review_calendar_note

    class Reviewed(Event):
        """A reviewer (复核) checked it and passes it to an approver."""

        TOPIC = "fapiao.reentry_application.reviewed.v1"
        reviewer: str
        comment: str

        def apply(self, app: ReEntryApplication) -> None:
            app.status, app.reviewer = "reviewed", self.reviewer

    class Approved(Event):
        """An approver (财务经理) approved it; the invoices were re-entered in the same save."""

        TOPIC = "fapiao.reentry_application.approved.v1"
        approver: str
        comment: str

        def apply(self, app: ReEntryApplication) -> None:
            app.status, app.approver = "approved", self.approver

    class Returned(Event):
        """Sent back to the applicant with reasons; the applicant may correct and resubmit."""

        TOPIC = "fapiao.reentry_application.returned.v1"
        returned_by: str
        reasons: list[str]

        def apply(self, app: ReEntryApplication) -> None:
            app.status, app.reviewer = "returned", None

    class Withdrawn(Event):
        """The applicant withdrew it."""

        TOPIC = "fapiao.reentry_application.withdrawn.v1"
        reason: str

        def apply(self, app: ReEntryApplication) -> None:
            app.status = "withdrawn"

    class ReviewOverdue(Event):
        """The review deadline of submission `round` passed without a decision."""

        TOPIC = "fapiao.reentry_application.review_overdue.v1"
        round: int
        due_at: datetime

        def apply(self, app: ReEntryApplication) -> None:
            app.overdue_flagged = True

    def __init__(self) -> None:
        self.tenant_id = self.number = self.applicant = self.reason = ""
        self.invoice_ids: list[str] = []
        self.corrections: dict[str, dict[str, str]] = {}
        self.attachments: list[dict[str, Any]] = []
        self.status = "drafted"
        self.round = 0
        self.reviewer: str | None = None
        self.approver: str | None = None
        self.overdue_flagged = False
        self.review_due_at: datetime | None = None
        self.review_calendar = ""
        self.review_calendar_note = ""

    @classmethod
    def draft(
        cls,
        application_id: UUID,
        tenant_id: str,
        number: str,
        applicant: str,
        invoice_ids: list[UUID],
        reason: str,
        by: Provenance,
    ) -> ReEntryApplication:
        if not invoice_ids:
            raise InvalidCommandFieldError("invoice_ids", "at least one invoice", "required")
        if len(set(invoice_ids)) != len(invoice_ids):
            raise InvalidCommandFieldError("invoice_ids", "an invoice is listed twice", "unique")
        return cls._create(
            cls.Drafted,
            id=application_id,
            **by.fields(),
            tenant_id=tenant_id,
            number=number,
            applicant=applicant,
            invoice_ids=[str(i) for i in invoice_ids],
            reason=reason.strip(),
        )

    # ---- the applicant ---------------------------------------------------------------------

    def refusal(self, step: str, person: str) -> DomainError | None:
        """Why `person` may not take `step` (review, approve, return, withdraw, or an
        applicant's edit) now, or None: the rules each command enforces, asked before the click
        so the console can explain a refusal instead of offering the button."""
        if step in ("review", "approve", "return"):
            allowed = {"review": ("submitted",), "approve": ("reviewed",)}.get(
                step, ("submitted", "reviewed")
            )
            if self.status not in allowed:
                return InvalidTransitionError(self.status, step, "an application")
            if person == self.applicant:
                return SeparationOfDutiesError(person, step, "applicant")
            if step == "approve" and person == self.reviewer:
                return SeparationOfDutiesError(person, step, "reviewer")
            return None
        if person != self.applicant:
            return SeparationOfDutiesError(person, step, "not the applicant")
        editable = ("drafted", "submitted", "returned") if step == "withdraw" else EDITABLE
        if self.status not in editable:
            return InvalidTransitionError(self.status, step, "an application")
        return None

    def _check(self, step: str, person: str) -> None:
        refused = self.refusal(step, person)
        if refused is not None:
            raise refused

    def _by_applicant(self, person: str, step: str) -> None:
        self._check(step, person)

    def record_correction(
        self, by: Provenance, person: str, invoice_id: UUID, fields: dict[str, str]
    ) -> None:
        self._by_applicant(person, "correct")
        if str(invoice_id) not in self.invoice_ids:
            raise InvalidCommandFieldError(
                "invoice_id", "not an invoice of this application", "not_found"
            )
        unknown = sorted(set(fields) - set(CORRECTABLE))
        if unknown or not fields:
            raise InvalidCommandFieldError(
                "fields", f"correctable fields are {', '.join(CORRECTABLE)}", "enum"
            )
        self.trigger_event(
            self.CorrectionRecorded,
            **by.fields(),
            invoice_id=str(invoice_id),
            fields={k: str(v) for k, v in fields.items()},
        )

    def record_reason(self, by: Provenance, person: str, reason: str) -> None:
        self._by_applicant(person, "correct")
        if not reason.strip():
            raise InvalidCommandFieldError(
                "reason", "say why the invoices need re-entry", "required"
            )
        self.trigger_event(self.ReasonRecorded, **by.fields(), reason=reason.strip())

    def add_attachment(self, by: Provenance, person: str, ref: AttachmentRef) -> None:
        self._by_applicant(person, "attach to")
        self.trigger_event(self.AttachmentAdded, **by.fields(), attachment=ref.to_dict())

    def missing_items(self) -> list[InvalidFieldError]:
        """Everything that keeps it from being submitted, all at once."""
        missing = []
        if not self.reason:
            missing.append(
                InvalidFieldError("reason", "say why the invoices need re-entry", "required")
            )
        if not any(a["media_type"] in DOCUMENT_TYPES for a in self.attachments):
            missing.append(
                InvalidFieldError(
                    "attachments", "attach the invoice document (PDF, OFD or XML)", "required"
                )
            )
        for i, invoice_id in enumerate(self.invoice_ids):
            if invoice_id not in self.corrections:
                missing.append(
                    InvalidFieldError(
                        f"invoices[{i}].fields",
                        "record the fields to enter (at least the ones to change)",
                        "required",
                    )
                )
        return missing

    def submit(self, by: Provenance, person: str, review_deadline: WorkingDeadline) -> None:
        self._by_applicant(person, "submit")
        missing = self.missing_items()
        if missing:
            raise ValidationFailedError(missing)
        self.trigger_event(
            self.Submitted,
            **by.fields(),
            round=self.round + 1,
            review_due_at=review_deadline.due_at,
            review_calendar=review_deadline.calendar,
            review_calendar_note=review_deadline.note,
        )

    def withdraw(self, by: Provenance, person: str, reason: str) -> None:
        self._check("withdraw", person)
        self.trigger_event(self.Withdrawn, **by.fields(), reason=reason)

    # ---- reviewer and approver -------------------------------------------------------------

    def review(self, by: Provenance, person: str, comment: str = "") -> None:
        self._check("review", person)
        self.trigger_event(self.Reviewed, **by.fields(), reviewer=person, comment=comment)

    def approve(self, by: Provenance, person: str, comment: str = "") -> None:
        self._check("approve", person)
        self.trigger_event(self.Approved, **by.fields(), approver=person, comment=comment)

    def return_to_applicant(self, by: Provenance, person: str, reasons: list[str]) -> None:
        self._check("return", person)
        reasons = [r.strip() for r in reasons if r.strip()]
        if not reasons:
            raise InvalidCommandFieldError("reasons", "say what must change", "required")
        self.trigger_event(self.Returned, **by.fields(), returned_by=person, reasons=reasons)

    def flag_review_overdue(self, by: Provenance, round_: int, due_at: datetime) -> None:
        if (
            self.status not in ("submitted", "reviewed")
            or self.round != round_
            or (self.overdue_flagged)
        ):
            raise InvalidTransitionError(self.status, "flag as overdue", "an application")
        self.trigger_event(self.ReviewOverdue, **by.fields(), round=round_, due_at=due_at)
