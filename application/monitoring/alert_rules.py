"""alerts: which events deserve a webhook, and the payload each carries.

Pure: the worker's SQL side finds the tenant's subscriptions and writes the outbox rows.
"""

from __future__ import annotations

from typing import Any

from application.topics import topics_of
from domain.invoices.invoice import Invoice
from domain.monitoring.reconciliation_run import ReconciliationRun

NAME = "alerts"
EVENT_TYPES = ("invoice.missing", "invoice.rejected", "reconciliation.mismatch")


EVENTS = (Invoice.MarkedMissing, Invoice.Rejected, ReconciliationRun.Completed)
TOPICS = topics_of(EVENTS)


def handles(event: object) -> bool:
    return isinstance(event, EVENTS)


def alert(event: Any, position: int, subject: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(event type, payload) for an event worth an alert, or None. `subject` is what the
    aggregate's first event says (tenant, invoice key)."""
    base = {
        "position": position,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "source": event.source,
    }
    if isinstance(event, Invoice.MarkedMissing):
        return "invoice.missing", {
            **base,
            "invoice_id": str(event.originator_id),
            "invoice_key": subject.get("invoice_key"),
            "detected_by": event.detected_by,
            "note": event.note,
            "evidence": event.evidence,
            "due_at": event.due_at.isoformat() if event.due_at else None,
        }
    if isinstance(event, Invoice.Rejected):
        return "invoice.rejected", {
            **base,
            "invoice_id": str(event.originator_id),
            "invoice_key": subject.get("invoice_key"),
            "reason_code": event.reason_code,
            "message": event.message,
        }
    if isinstance(event, ReconciliationRun.Completed):
        problems = {
            k: v
            for k, v in event.counts.items()
            if k in ("mismatched", "absent", "unknown", "duplicate", "invalid")
        }
        if not problems:
            return None
        return "reconciliation.mismatch", {
            **base,
            "run_id": str(event.originator_id),
            "counts": event.counts,
            "period_from": event.period_from.isoformat() if event.period_from else None,
            "period_to": event.period_to.isoformat() if event.period_to else None,
        }
    return None
