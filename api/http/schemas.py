"""Request and response models of the HTTP API (never the aggregates or their events)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from application.invoices.lifecycle import MoneyIn
from domain.calendar import SHANGHAI
from domain.invoices.issuance import InvoiceDraft, LineDraft, PartyDraft


def shown(value: datetime | None) -> str | None:
    """Times are stored in UTC and shown in Beijing time, with the offset (+08:00)."""
    return None if value is None else value.astimezone(SHANGHAI).isoformat()


def shown_times(value: Any, key: str = "") -> Any:
    """Every `*_at` time in a decoded payload shown in Beijing time with its offset, the rest as
    it is (the API's times are Beijing times, README "Conventions")."""
    if isinstance(value, dict):
        return {k: shown_times(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shown_times(v, key) for v in value]
    if isinstance(value, str) and key.endswith("_at"):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return shown(parsed) if parsed.tzinfo else value
    return value


def upload_example(file: str = "发票.pdf", **fields: str) -> dict[str, Any]:
    """An example for a multipart upload route (the OpenAPI shows the file by its name)."""
    example = {"file": f"(binary: {file})", **fields}
    return {"requestBody": {"content": {"multipart/form-data": {"example": example}}}}


UPLOAD_EXAMPLE = upload_example()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(Strict):
    name: str = Field(description="Registered name, or an individual's name")
    taxpayer_code: str | None = Field(
        default=None,
        description="Unified social credit code (18 characters); empty for an individual buyer",
    )


class Line(Strict):
    name: str
    amount: MoneyIn
    tax: MoneyIn
    rate: str = Field(description='"0.13", "0.09", "0.06", ..., "exempt" or "not_taxable"')
    kind: str = Field(default="normal", description="normal, discount (negative) or discounted")
    quantity: str | int | float | None = None
    unit_price: str | int | float | None = None
    unit: str | None = None
    tax_code: str | None = None


ISSUE_EXAMPLE = {
    "number": "26112000000135114086",
    "invoice_type": "digital_special",
    "issued_on": "2026-11-20",
    "seller": {"name": "北京云帆科技有限公司", "taxpayer_code": "91110108769914581E"},
    "buyer": {"name": "杭州青禾贸易有限公司", "taxpayer_code": "91330100716105852F"},
    "amount": "1000.00",
    "tax": "130.00",
    "total": "1130.00",
    "lines": [
        {
            "name": "*信息技术服务*软件维护",
            "amount": "1000.00",
            "tax": "130.00",
            "rate": "0.13",
            "quantity": "10",
            "unit_price": "100",
            "unit": "次",
        }
    ],
}


class IssueInvoiceRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ISSUE_EXAMPLE]})

    number: str = Field(description="20-digit fully digital number, or the 8-digit legacy number")
    code: str | None = Field(default=None, description="10- or 12-digit legacy invoice code")
    invoice_type: str = Field(
        description="digital_special, digital_ordinary, "
        "digital_paper_special, digital_paper_ordinary, legacy_special_paper"
        ", legacy_ordinary_paper, legacy_special_electronic, "
        "legacy_ordinary_electronic"
    )
    direction: str = Field(default="outbound", description="outbound (we issued) or inbound")
    issued_on: date = Field(description="Issue date (Beijing)")
    seller: Party
    buyer: Party
    amount: MoneyIn = Field(description='Total excluding tax, e.g. "1000.00"')
    tax: MoneyIn
    total: MoneyIn = Field(description="Total including tax (价税合计) = amount + tax")
    tax_rate: str | None = Field(default=None, description="Required when no lines are given")
    lines: list[Line] = Field(default_factory=list)
    remarks: str = ""
    reverses_key: str | None = Field(
        default=None,
        description="For a red-letter invoice: the canonical key of the invoice it reverses",
    )
    replaces_key: str | None = Field(
        default=None, description="For a reissued invoice: the reversed invoice it replaces"
    )
    occurred_at: AwareDatetime | None = None

    def to_draft(self) -> InvoiceDraft:
        return InvoiceDraft(
            number=self.number,
            code=self.code,
            invoice_type=self.invoice_type,
            direction=self.direction,
            issued_on=self.issued_on,
            seller=PartyDraft(self.seller.name, self.seller.taxpayer_code),
            buyer=PartyDraft(self.buyer.name, self.buyer.taxpayer_code),
            amount=self.amount,
            tax=self.tax,
            total=self.total,
            tax_rate=self.tax_rate,
            lines=tuple(LineDraft(**ln.model_dump()) for ln in self.lines),
            remarks=self.remarks,
            reverses_key=self.reverses_key,
            replaces_key=self.replaces_key,
        )


class IssueBatchRequest(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"invoices": [ISSUE_EXAMPLE]}]}
    )

    invoices: list[IssueInvoiceRequest] = Field(min_length=1, max_length=1000)


class FieldWarningOut(BaseModel):
    field: str
    rule: str
    message: str


class CommandResponse(BaseModel):
    invoice_id: UUID
    invoice_key: str
    status: str
    version: int
    position: int = Field(description="Log position: pass as consistent_after to read it back")
    warnings: list[FieldWarningOut]
    replayed: bool = Field(description="True when this answers a repeated Idempotency-Key")


class BatchResponse(BaseModel):
    results: list[CommandResponse]
    position: int


class InvoiceOut(BaseModel):
    invoice_id: UUID
    invoice_key: str
    number: str
    code: str | None
    invoice_type: str
    direction: str
    issued_on: date
    seller: Party
    buyer: Party
    amount: str
    tax: str
    total: str
    tax_rate: str | None
    status: str
    submission_attempts: int
    last_failure_reason: str | None
    platform_ref: str | None
    acknowledged_at: str | None
    acknowledged_late: bool
    rejection_code: str | None
    rejection_message: str | None
    missing_detected_by: str | None
    missing_since: str | None
    reversed_amount: str
    red_invoice_keys: list[str] = Field(description="Red-letter invoices reversing this one")
    reverses_key: str | None = Field(description="For a red invoice: the invoice it reverses")
    replaces_key: str | None = Field(description="For a reissued invoice: the one it replaces")
    replaced_by: str | None = Field(description="The invoice that replaced this one")
    version: int
    last_position: int
    last_event: str
    issued_at: str
    updated_at: str

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> InvoiceOut:
        return cls.model_validate(invoice_fields(r))


def invoice_fields(r: dict[str, Any]) -> dict[str, Any]:
    """A row of invoice_status as InvoiceOut's fields, in values orjson writes as InvoiceOut's
    JSON (uuid and date as strings): GET one invoice sends this without a model in between."""
    return {
        "invoice_id": r["invoice_id"],
        "invoice_key": r["invoice_key"],
        "number": r["number"],
        "code": r["code"],
        "invoice_type": r["invoice_type"],
        "direction": r["direction"],
        "issued_on": r["issued_on"],
        "seller": {"name": r["seller_name"], "taxpayer_code": r["seller_code"]},
        "buyer": {"name": r["buyer_name"], "taxpayer_code": r["buyer_code"]},
        "amount": str(r["amount"]),
        "tax": str(r["tax"]),
        "total": str(r["total"]),
        "tax_rate": r["tax_rate"],
        "status": r["status"],
        "submission_attempts": r["submission_attempts"],
        "last_failure_reason": r["last_failure_reason"],
        "platform_ref": r["platform_ref"],
        "acknowledged_at": shown(r["acknowledged_at"]),
        "acknowledged_late": bool(r["acknowledged_late"]),
        "rejection_code": r["rejection_code"],
        "rejection_message": r["rejection_message"],
        "missing_detected_by": r["missing_detected_by"],
        "missing_since": shown(r["missing_since"]),
        "reversed_amount": str(r["reversed_amount"]),
        "red_invoice_keys": [k for k in r["red_invoice_keys"].split(",") if k],
        "reverses_key": r["reverses_key"],
        "replaces_key": r["replaces_key"],
        "replaced_by": r["replaced_by"],
        "version": r["version"],
        "last_position": r["last_position"],
        "last_event": r["last_event"],
        "issued_at": shown(r["issued_at"]) or "",
        "updated_at": shown(r["updated_at"]) or "",
    }


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    total: int = Field(description="How many invoices match the filters (all pages)")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at end")


class StatusCounts(BaseModel):
    counts: dict[str, int]
    total: int


class EventOut(BaseModel):
    position: int
    version: int
    type: str
    topic: str
    recorded_at: str = Field(description="When the database stored it (Beijing time)")
    actor: str
    source: str
    occurred_at: str = Field(description="When it happened, business time (Beijing time)")
    data: dict[str, Any]

    @field_validator("recorded_at", "occurred_at", "data", mode="before")
    @classmethod
    def _beijing(cls, value: Any, info: ValidationInfo) -> Any:
        return shown_times(value, info.field_name or "")
