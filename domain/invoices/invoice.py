"""The Invoice aggregate: an invoice's journey to the tax platform as immutable events.

Command methods check the lifecycle (domain/status.py) and the correction rules, then trigger
an event; each event's `apply` only assigns, because it is replayed forever on old data too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.bounds import CODE_LENGTH, NOTE_LENGTH, check_text
from domain.errors import (
    CorrectionNotAllowedError,
    InvalidCommandFieldError,
    InvalidTransitionError,
)
from domain.invoices.identity import invoice_id, parse_canonical_key
from domain.invoices.issuance import InvoiceFacts
from domain.invoices.status import ALLOWED_FROM, InvoiceStatus, Step
from domain.invoices.values import InvoiceType, money

DETECTED_BY = ("timer", "reconciliation", "person")
LEARNED_VIA = ("callback", "poll", "reconciliation", "manual")
RED_REASONS = {
    "01": "开票有误 invoicing error",
    "02": "销货退回 goods returned",
    "03": "服务中止 service stopped",
    "04": "销售折让 sales allowance",
}


def _required(field: str, value: str) -> str:
    """A code (reason, channel, platform reference): not empty, within CODE_LENGTH, one line."""
    if not value or not value.strip():
        raise InvalidCommandFieldError(field, "must not be empty", rule="required")
    return check_text(field, value.strip(), CODE_LENGTH, multiline=False)


def _code(field: str, value: str | None) -> str | None:
    return check_text(field, value, CODE_LENGTH, multiline=False) if value else None


def _note(field: str, value: str) -> str:
    return check_text(field, value, NOTE_LENGTH)


class Invoice(BaseAggregate[UUID]):
    """One invoice of one tenant, identified by uuid5(tenant, canonical key)."""

    TOPIC = "fapiao.invoice"

    class Event(LedgerEvent):
        pass

    class Issued(Event, AggregateCreated):
        """The enterprise issued (or received) this invoice; the facts were valid when stated.
        A red-letter invoice names the invoice it reverses (`reverses_key`); a reissued one
        names the reversed invoice it replaces (`replaces_key`)."""

        TOPIC = "fapiao.invoice.issued.v1"
        class_version = 2
        tenant_id: str
        invoice_key: str
        number: str
        code: str | None
        invoice_type: str
        direction: str
        issued_on: date
        seller_code: str
        seller_name: str
        buyer_code: str | None
        buyer_name: str
        amount: Decimal
        tax: Decimal
        total: Decimal
        tax_rate: str | None
        lines: list[dict[str, Any]]
        remarks: str
        reverses_key: str | None
        replaces_key: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["replaces_key"] = None  # v2: the reversed invoice this one replaces

        def apply(self, inv: Invoice) -> None:
            inv.tenant_id = self.tenant_id
            inv.invoice_key = self.invoice_key
            inv.invoice_type = self.invoice_type
            inv.issued_on = self.issued_on
            inv.total = self.total
            inv.status = InvoiceStatus.ISSUED

    class Submitted(Event):
        """An upload to the platform was attempted (attempt counts from 1)."""

        TOPIC = "fapiao.invoice.submitted.v1"
        attempt: int
        channel: str
        batch_ref: str | None

        def apply(self, inv: Invoice) -> None:
            inv.submission_attempts = self.attempt
            inv.submitted_at = self.occurred_at
            inv.status = InvoiceStatus.SUBMITTED

    class SubmissionFailed(Event):
        """The upload did not reach the platform (network, maintenance, client error)."""

        TOPIC = "fapiao.invoice.submission_failed.v1"
        reason_code: str
        detail: str

        def apply(self, inv: Invoice) -> None:
            inv.status = InvoiceStatus.SUBMISSION_FAILED

    class Acknowledged(Event):
        """The platform confirmed it holds the invoice. `was_missing` marks a late one, and
        `late_by_seconds` says how late: from the moment it was due (or reported missing).

        v2 added `late_by_seconds`; v1 events read as unknown (None)."""

        TOPIC = "fapiao.invoice.acknowledged.v1"
        class_version = 2
        platform_ref: str
        acknowledged_at: datetime
        learned_via: str
        was_missing: bool
        late_by_seconds: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["late_by_seconds"] = None

        def apply(self, inv: Invoice) -> None:
            inv.platform_ref = self.platform_ref
            inv.status = InvoiceStatus.ACKNOWLEDGED

    class Rejected(Event):
        """The platform refused the invoice with its own reason code and message."""

        TOPIC = "fapiao.invoice.rejected.v1"
        reason_code: str
        message: str

        def apply(self, inv: Invoice) -> None:
            inv.status = InvoiceStatus.REJECTED

    class MarkedMissing(Event):
        """Believed uploaded, not found on the platform: by timer, reconciliation or a person.

        A timer records the submission it waited on, the window and when it fell due; a
        reconciliation names its run in `evidence`. v2 added the three timer fields."""

        TOPIC = "fapiao.invoice.marked_missing.v1"
        class_version = 2
        detected_by: str
        note: str
        evidence: str | None
        submitted_at: datetime | None
        window_seconds: int | None
        due_at: datetime | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(submitted_at=None, window_seconds=None, due_at=None)

        def apply(self, inv: Invoice) -> None:
            inv.status = InvoiceStatus.MISSING
            inv.missing_since = self.due_at or self.occurred_at

    class Voided(Event):
        """A paper invoice was voided (作废), all copies recovered."""

        TOPIC = "fapiao.invoice.voided.v1"
        reason: str

        def apply(self, inv: Invoice) -> None:
            inv.status = InvoiceStatus.VOIDED

    class RedReversed(Event):
        """A red-letter invoice reversed all or part of this one (红冲); amounts add up."""

        TOPIC = "fapiao.invoice.red_reversed.v1"
        confirmation_number: str
        red_invoice_key: str
        scope: str
        amount: Decimal
        reason_code: str

        def apply(self, inv: Invoice) -> None:
            inv.reversed_amount = inv.reversed_amount + self.amount
            inv.status = (
                InvoiceStatus.REVERSED
                if self.scope == "full" or inv.reversed_amount >= inv.total
                else InvoiceStatus.PARTIALLY_REVERSED
            )

    class ReEntered(Event):
        """An approved supplementary-entry application (补录) re-entered the invoice: the
        platform receives it again as upload `attempt`, and its acknowledgement closes it."""

        TOPIC = "fapiao.invoice.re_entered.v1"
        application_id: UUID
        application_number: str
        attempt: int

        def apply(self, inv: Invoice) -> None:
            inv.submission_attempts = self.attempt
            inv.submitted_at = self.occurred_at
            inv.status = InvoiceStatus.RE_ENTERED

    def __init__(self) -> None:
        self.tenant_id = ""
        self.invoice_key = ""
        self.invoice_type = ""
        self.issued_on = date.min
        self.total = Decimal("0.00")
        self.status = InvoiceStatus.ISSUED
        self.submission_attempts = 0
        self.platform_ref: str | None = None
        self.reversed_amount = Decimal("0.00")
        self.submitted_at: datetime | None = None
        self.missing_since: datetime | None = None

    # ---- commands -------------------------------------------------------------------------

    @staticmethod
    def issued_facts(tenant_id: str, facts: InvoiceFacts, by: Provenance) -> dict[str, Any]:
        """The Issued event's attributes beyond identity and clock: the one place they are
        named, for `issue` and for the batch path that writes the events directly."""
        key = facts.key
        return {
            **by.fields(),
            "tenant_id": tenant_id,
            "invoice_key": key.canonical,
            "number": key.number,
            "code": key.code,
            "invoice_type": facts.invoice_type.value,
            "direction": facts.direction.value,
            "issued_on": facts.issued_on,
            "seller_code": facts.seller_code,
            "seller_name": facts.seller_name,
            "buyer_code": facts.buyer_code,
            "buyer_name": facts.buyer_name,
            "amount": facts.amount,
            "tax": facts.tax,
            "total": facts.total,
            "tax_rate": facts.tax_rate,
            "lines": [line.to_dict() for line in facts.lines],
            "remarks": facts.remarks,
            "reverses_key": facts.reverses_key,
            "replaces_key": facts.replaces_key,
        }

    @classmethod
    def issue(cls, tenant_id: str, facts: InvoiceFacts, by: Provenance) -> Invoice:
        return cls._create(
            cls.Issued,
            id=invoice_id(tenant_id, facts.key),
            **cls.issued_facts(tenant_id, facts, by),
        )

    @classmethod
    def issued_event(
        cls, tenant_id: str, facts: InvoiceFacts, by: Provenance, timestamp: datetime
    ) -> Invoice.Issued:
        """The event `issue` records (version 1 of the invoice's stream), without building
        the aggregate: for recording many new invoices at once. Its rules are `issue`'s.

        Its attributes are set as the frozen data class's `__init__` sets them, in field
        order, but in one step rather than one `object.__setattr__` per field (26 of them:
        half the cost of the event). Its `__post_init__` only checks that `originator_id` is
        a UUID, which `invoice_id` always is. tests/unit/test_invoice.py holds the event
        equal to the constructed one, field for field and in the same order."""
        event: Invoice.Issued = object.__new__(cls.Issued)
        event.__dict__.update(
            {
                "originator_id": invoice_id(tenant_id, facts.key),
                "originator_version": cls.INITIAL_VERSION,
                "timestamp": timestamp,
                "originator_topic": cls.TOPIC,
                **cls.issued_facts(tenant_id, facts, by),
            }
        )
        return event

    def _require(self, step: Step) -> None:
        if self.status not in ALLOWED_FROM[step]:
            raise InvalidTransitionError(self.status.value, step.value)

    def submit(self, by: Provenance, channel: str, batch_ref: str | None = None) -> None:
        self._require(Step.SUBMIT)
        self.trigger_event(
            self.Submitted,
            **by.fields(),
            attempt=self.submission_attempts + 1,
            channel=_required("channel", channel),
            batch_ref=_code("batch_ref", batch_ref),
        )

    def fail_submission(self, by: Provenance, reason_code: str, detail: str = "") -> None:
        self._require(Step.FAIL_SUBMISSION)
        self.trigger_event(
            self.SubmissionFailed,
            **by.fields(),
            reason_code=_required("reason_code", reason_code),
            detail=_note("detail", detail),
        )

    def acknowledge(
        self, by: Provenance, platform_ref: str, acknowledged_at: datetime, learned_via: str
    ) -> None:
        self._require(Step.ACKNOWLEDGE)
        if learned_via not in LEARNED_VIA:
            raise InvalidCommandFieldError(
                "learned_via", f"must be one of {', '.join(LEARNED_VIA)}", rule="enum"
            )
        if acknowledged_at.tzinfo is None:
            raise InvalidCommandFieldError("acknowledged_at", "must carry a time zone", "aware")
        late = self.status is InvoiceStatus.MISSING and self.missing_since is not None
        self.trigger_event(
            self.Acknowledged,
            **by.fields(),
            platform_ref=_required("platform_ref", platform_ref),
            acknowledged_at=acknowledged_at,
            learned_via=learned_via,
            was_missing=self.status is InvoiceStatus.MISSING,
            late_by_seconds=(
                max(0, int((acknowledged_at - self.missing_since).total_seconds()))
                if late and self.missing_since
                else None
            ),
        )

    def reject(self, by: Provenance, reason_code: str, message: str = "") -> None:
        self._require(Step.REJECT)
        self.trigger_event(
            self.Rejected,
            **by.fields(),
            reason_code=_required("reason_code", reason_code),
            message=_note("message", message),
        )

    def mark_missing(
        self, by: Provenance, detected_by: str, note: str = "", evidence: str | None = None
    ) -> None:
        self._require(Step.MARK_MISSING)
        if detected_by not in DETECTED_BY:
            raise InvalidCommandFieldError(
                "detected_by", f"must be one of {', '.join(DETECTED_BY)}", rule="enum"
            )
        self.trigger_event(
            self.MarkedMissing,
            **by.fields(),
            detected_by=detected_by,
            note=_note("note", note),
            evidence=evidence,
            submitted_at=None,
            window_seconds=None,
            due_at=None,
        )

    def is_overdue_for(self, attempt: int) -> bool:
        """Still waiting on the same upload a timer was started for."""
        waiting = self.status in (InvoiceStatus.SUBMITTED, InvoiceStatus.RE_ENTERED)
        return waiting and self.submission_attempts == attempt

    def re_enter(self, by: Provenance, application_id: UUID, application_number: str) -> None:
        self._require(Step.RE_ENTER)
        self.trigger_event(
            self.ReEntered,
            **by.fields(),
            application_id=application_id,
            application_number=application_number,
            attempt=self.submission_attempts + 1,
        )

    def expire_acknowledgement_window(
        self, by: Provenance, attempt: int, window: timedelta, due_at: datetime
    ) -> None:
        """The timer's verdict: no acknowledgement within the window (maintenance excluded)."""
        self._require(Step.MARK_MISSING)
        if not self.is_overdue_for(attempt):
            raise InvalidTransitionError(self.status.value, Step.MARK_MISSING.value)
        hours = window.total_seconds() / 3600
        self.trigger_event(
            self.MarkedMissing,
            **by.fields(),
            detected_by="timer",
            note=f"no acknowledgement within {hours:g} h of upload attempt {attempt} "
            "(maintenance windows excluded)",
            evidence=None,
            submitted_at=self.submitted_at,
            window_seconds=int(window.total_seconds()),
            due_at=due_at,
        )

    def void(self, by: Provenance, reason: str) -> None:
        self._require(Step.VOID)
        if not InvoiceType(self.invoice_type).is_paper:
            raise CorrectionNotAllowedError(
                "void_electronic",
                f"a {self.invoice_type} invoice cannot be voided; issue a red-letter invoice",
            )
        self.trigger_event(self.Voided, **by.fields(), reason=_required("reason", reason))

    def red_reverse(
        self,
        by: Provenance,
        confirmation_number: str,
        red_invoice_key: str,
        scope: str,
        reason_code: str,
        amount: object = None,
    ) -> None:
        self._require(Step.RED_REVERSE)
        number = (confirmation_number or "").strip()
        if len(number) != 20 or not number.isascii() or not number.isalnum():
            raise InvalidCommandFieldError(
                "confirmation_number", "must be the form's 20-character number", rule="format"
            )
        red_key = parse_canonical_key(red_invoice_key).canonical
        if reason_code not in RED_REASONS:
            raise InvalidCommandFieldError(
                "reason_code", f"must be one of {', '.join(RED_REASONS)}", rule="enum"
            )
        remaining = self.total - self.reversed_amount
        if scope == "full":
            reversed_amount = remaining
        elif scope == "partial":
            if reason_code == "01":
                raise CorrectionNotAllowedError(
                    "partial_invoicing_error", "reason 01 (invoicing error) needs a full reversal"
                )
            if amount is None:
                raise InvalidCommandFieldError(
                    "amount", "required for a partial reversal", rule="required"
                )
            reversed_amount = abs(money("amount", amount))
            if reversed_amount == 0 or reversed_amount > remaining:
                raise CorrectionNotAllowedError(
                    "reversal_exceeds_total",
                    f"a reversal of {reversed_amount} exceeds what remains ({remaining})",
                )
        else:
            raise InvalidCommandFieldError("scope", "must be full or partial", rule="enum")
        self.trigger_event(
            self.RedReversed,
            **by.fields(),
            confirmation_number=number,
            red_invoice_key=red_key,
            scope="full" if reversed_amount == remaining else scope,
            amount=reversed_amount,
            reason_code=reason_code,
        )
