"""invoice_status: the current status of every invoice, folded from its events.

`fold` is pure and total over the Invoice events: the worker loads the rows a batch touches,
folds the batch in memory and writes the changed rows once (DESIGN.md 4).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from application.topics import events_of, topics_of
from domain.invoices.invoice import Invoice

NAME = "invoice_status"
Row = dict[str, Any]


EVENTS = events_of(Invoice)
TOPICS = topics_of(EVENTS)


def handles(event: object) -> bool:
    return isinstance(event, EVENTS)


def fold(row: Row | None, event: Invoice.Event, position: int) -> Row:
    """The row after `event`. Raises if the event does not fit the row (it is dead-lettered)."""
    if isinstance(event, Invoice.Issued):
        if row is not None:
            raise ValueError(f"invoice {event.originator_id} issued twice")
        row = {
            "invoice_id": event.originator_id,
            "tenant_id": event.tenant_id,
            "invoice_key": event.invoice_key,
            "number": event.number,
            "code": event.code,
            "invoice_type": event.invoice_type,
            "direction": event.direction,
            "issued_on": event.issued_on,
            "seller_code": event.seller_code,
            "seller_name": event.seller_name,
            "buyer_code": event.buyer_code,
            "buyer_name": event.buyer_name,
            "amount": event.amount,
            "tax": event.tax,
            "total": event.total,
            "tax_rate": event.tax_rate,
            "status": "issued",
            "submission_attempts": 0,
            "last_failure_reason": None,
            "platform_ref": None,
            "acknowledged_at": None,
            "acknowledged_late": 0,
            "rejection_code": None,
            "rejection_message": None,
            "missing_detected_by": None,
            "missing_since": None,
            "reversed_amount": Decimal("0.00"),
            "red_invoice_keys": "",
            "reverses_key": event.reverses_key,
            "replaces_key": event.replaces_key,
            "replaced_by": None,
            "issued_at": event.occurred_at,
        }
    else:
        if row is None:
            raise ValueError(f"{type(event).__name__} for unknown invoice {event.originator_id}")
        if event.originator_version != row["version"] + 1:
            raise ValueError(
                f"version {event.originator_version} follows {row['version']} "
                f"for invoice {event.originator_id}"
            )
        row = dict(row)
        _apply(row, event)
    row["version"] = event.originator_version
    row["last_position"] = position
    row["last_event"] = type(event).__name__
    row["updated_at"] = event.occurred_at
    return row


def _apply(row: Row, event: Invoice.Event) -> None:
    if isinstance(event, Invoice.Submitted):
        row["status"] = "submitted"
        row["submission_attempts"] = event.attempt
    elif isinstance(event, Invoice.SubmissionFailed):
        row["status"] = "submission_failed"
        row["last_failure_reason"] = event.reason_code
    elif isinstance(event, Invoice.Acknowledged):
        row["status"] = "acknowledged"
        row["platform_ref"] = event.platform_ref
        row["acknowledged_at"] = event.acknowledged_at
        row["acknowledged_late"] = int(event.was_missing)
    elif isinstance(event, Invoice.Rejected):
        row["status"] = "rejected"
        row["rejection_code"] = event.reason_code
        row["rejection_message"] = event.message
    elif isinstance(event, Invoice.MarkedMissing):
        row["status"] = "missing"
        row["missing_detected_by"] = event.detected_by
        row["missing_since"] = event.due_at or event.occurred_at
    elif isinstance(event, Invoice.ReEntered):
        row["status"] = "re_entered"
        row["submission_attempts"] = event.attempt
    elif isinstance(event, Invoice.Voided):
        row["status"] = "voided"
    elif isinstance(event, Invoice.RedReversed):
        reversed_amount = row["reversed_amount"] + event.amount
        row["reversed_amount"] = reversed_amount
        keys = [k for k in row["red_invoice_keys"].split(",") if k]
        row["red_invoice_keys"] = ",".join([*keys, event.red_invoice_key])
        full = event.scope == "full" or reversed_amount >= row["total"]
        row["status"] = "reversed" if full else "partially_reversed"
    else:
        raise ValueError(f"no fold for {type(event).__name__}")


def originals(event: Invoice.Issued) -> list[str]:
    """Keys of other invoices this new one corrects: the one it reverses or replaces."""
    return [k for k in (event.reverses_key, event.replaces_key) if k]


def link_original(original: Row, event: Invoice.Issued) -> Row:
    """The original's side of a correction: which red invoice reversed it, which replaced it."""
    row = dict(original)
    if event.replaces_key == row["invoice_key"]:
        row["replaced_by"] = event.invoice_key
    if event.reverses_key == row["invoice_key"]:
        keys = [k for k in row["red_invoice_keys"].split(",") if k]
        if event.invoice_key not in keys:
            row["red_invoice_keys"] = ",".join([*keys, event.invoice_key])
    return row
