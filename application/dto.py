"""Plain results the application returns; the API shapes them, never the aggregates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from domain.invoices.identity import FieldWarning


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and the fingerprint of the request that carried it."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class CommandResult:
    """What a command changed: the invoice, its new status and version, and the log position."""

    invoice_id: UUID
    invoice_key: str
    status: str
    version: int
    position: int
    warnings: list[dict[str, str]] = field(default_factory=list)
    replayed: bool = False

    def receipt_body(self) -> dict[str, Any]:
        return {
            "invoice_id": str(self.invoice_id),
            "invoice_key": self.invoice_key,
            "status": self.status,
            "version": self.version,
            "warnings": self.warnings,
        }

    @classmethod
    def from_receipt(cls, body: dict[str, Any], position: int) -> CommandResult:
        return cls(
            invoice_id=UUID(body["invoice_id"]),
            invoice_key=body["invoice_key"],
            status=body["status"],
            version=body["version"],
            position=position,
            warnings=body["warnings"],
            replayed=True,
        )


def warnings_as_dicts(warnings: list[FieldWarning]) -> list[dict[str, str]]:
    return [asdict(w) for w in warnings]


@dataclass(frozen=True)
class EventView:
    """One decoded event of an invoice's history."""

    position: int
    version: int
    type: str
    topic: str
    recorded_at: str
    actor: str
    source: str
    occurred_at: str
    data: dict[str, Any]
