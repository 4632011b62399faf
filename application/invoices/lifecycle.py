"""The invoice lifecycle commands, each declared once: its fields (with their docs and examples),
its summary and the aggregate method it calls.

The request body *is* the command: the HTTP routes take these models as their bodies, the CLI
validates `--set field=value` pairs into them, and `InvoiceLedger.change_invoice` applies them.
The class names are the request schemas' names in the OpenAPI document, which stay as they were
published. Issuing is not here (it creates the invoice; see `InvoiceLedger.issue_invoice`), nor
the timer's expiry or a re-entry, which no request asks for directly.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.base import Provenance
from domain.invoices.invoice import Invoice
from domain.invoices.status import Step

# Money travels as a decimal string ("1130.00"); integers are accepted, floats are refused by
# the domain with a named rule rather than silently rounded.
MoneyIn = str | int | float


def _with_examples(*examples: dict[str, Any]) -> ConfigDict:
    """A command's config: no unknown fields, immutable, with request examples for the docs."""
    return ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": list(examples)})


class LifecycleCommand(BaseModel):
    """One step of an existing invoice's lifecycle, with the business time it happened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: ClassVar[Step]
    name: ClassVar[str]  # the operation's name: OpenAPI operationId stem and CLI command
    summary: ClassVar[str]

    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (business time); defaults to now"
    )

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        """Decide on `invoice` (the aggregate validates and records the event)."""
        raise NotImplementedError


class SubmitRequest(LifecycleCommand):
    model_config = _with_examples({"channel": "erp-upload", "batch_ref": "B-20261120-07"})
    step = Step.SUBMIT
    name = "submit"
    summary = "Record an upload attempt to the tax platform"

    channel: str = "api"
    batch_ref: str | None = None

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        invoice.submit(by, self.channel, self.batch_ref)


class SubmissionFailureRequest(LifecycleCommand):
    model_config = _with_examples({"reason_code": "network_timeout", "detail": "no answer in 30 s"})
    step = Step.FAIL_SUBMISSION
    name = "fail_submission"
    summary = "Record that an upload did not reach the platform"

    reason_code: str
    detail: str = ""

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        invoice.fail_submission(by, self.reason_code, self.detail)


class AcknowledgeRequest(LifecycleCommand):
    model_config = _with_examples({"platform_ref": "ACK-9F2C11", "learned_via": "poll"})
    step = Step.ACKNOWLEDGE
    name = "acknowledge"
    summary = "Record the platform's acknowledgement (late ones included)"

    platform_ref: str
    acknowledged_at: AwareDatetime | None = None
    learned_via: str = Field(default="manual", description="callback, poll, reconciliation, manual")

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        at = self.acknowledged_at or by.occurred_at
        invoice.acknowledge(by, self.platform_ref, at, self.learned_via)


class RejectRequest(LifecycleCommand):
    model_config = _with_examples({"reason_code": "E0203", "message": "购方识别号校验不通过"})
    step = Step.REJECT
    name = "reject"
    summary = "Record the platform's rejection"

    reason_code: str
    message: str = ""

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        invoice.reject(by, self.reason_code, self.message)


class MissingReportRequest(LifecycleCommand):
    model_config = _with_examples({"note": "not found in the platform's query on 2026-11-23"})
    step = Step.MARK_MISSING
    name = "report_missing"
    summary = "Mark an invoice missing from the platform"

    detected_by: str = Field(default="person", description="person, timer or reconciliation")
    note: str = ""
    evidence: str | None = None

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        invoice.mark_missing(by, self.detected_by, self.note, self.evidence)


class VoidRequest(LifecycleCommand):
    model_config = _with_examples({"reason": "开票信息有误，发票联和抵扣联已全部收回"})
    step = Step.VOID
    name = "void"
    summary = "Void a paper invoice"

    reason: str

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        invoice.void(by, self.reason)


class RedReversalRequest(LifecycleCommand):
    model_config = _with_examples(
        {
            "confirmation_number": "11010826112001615708",
            "red_invoice_key": "26112000000135119999",
            "scope": "partial",
            "amount": "113.00",
            "reason_code": "04",
        }
    )
    step = Step.RED_REVERSE
    name = "red_reverse"
    summary = "Record a red-letter reversal (full or partial)"

    confirmation_number: str = Field(description="红字发票信息确认单编号, 20 characters")
    red_invoice_key: str
    scope: str = Field(description="full or partial")
    reason_code: str = Field(
        description="01 invoicing error, 02 returned, 03 service stopped, 04 sales allowance"
    )
    amount: MoneyIn | None = Field(default=None, description="Reversed total, for partial")

    def apply(self, invoice: Invoice, by: Provenance) -> None:
        # A float goes to the domain as it is, so it is refused there with its rule.
        amount = (
            self.amount
            if self.amount is None or isinstance(self.amount, float)
            else str(self.amount)
        )
        invoice.red_reverse(
            by, self.confirmation_number, self.red_invoice_key, self.scope, self.reason_code, amount
        )


# Every request-driven step, in the order the API and the CLI list them.
LIFECYCLE: tuple[type[LifecycleCommand], ...] = (
    SubmitRequest,
    SubmissionFailureRequest,
    AcknowledgeRequest,
    RejectRequest,
    MissingReportRequest,
    VoidRequest,
    RedReversalRequest,
)
