"""Domain happenings an operator wants in the logs, at INFO, one structured line each: an
invoice marked missing (and by what), rejected, acknowledged late; a reconciliation completed; a
case escalated or past a deadline. Heard from the ledger after each save commits, so the line
appears in the process that did it (the ticker's worker, the API, the CLI) with its request id.

Matched by stored topic, so this module names no event class of any room. Fields are the
event's facts that identify and explain it; never free text a person typed (notes may hold
personal data), never secrets.
"""

from __future__ import annotations

import logging
from typing import Any

from application.invoices.ledger import SavedEvent

log = logging.getLogger("fapiao.happenings")

# topic -> (message, the event's fields worth a log line)
HAPPENINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fapiao.invoice.marked_missing.v1": (
        "invoice marked missing",
        ("detected_by", "evidence", "submitted_at", "window_seconds", "due_at"),
    ),
    "fapiao.invoice.rejected.v1": ("invoice rejected by the platform", ("reason_code",)),
    "fapiao.invoice.acknowledged.v1": ("invoice acknowledged", ("was_missing", "late_by_seconds")),
    "fapiao.invoice.re_entered.v1": ("invoice re-entered", ()),
    "fapiao.reconciliation_run.completed.v1": (
        "reconciled",
        ("period_from", "period_to", "rows", "counts", "events_caused"),
    ),
    "fapiao.complaint.escalated.v1": ("case escalated", ("step", "due_on")),
    "fapiao.complaint.reply_overdue.v1": ("case reply overdue", ("due_on",)),
    "fapiao.complaint.escalation_overdue.v1": ("case escalation overdue", ("index",)),
    "fapiao.reentry_application.review_overdue.v1": ("case review overdue", ("round", "due_at")),
}


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def log_happenings(saved: list[SavedEvent]) -> None:
    """The ledger's event listener: one INFO line per happening in `saved`."""
    for position, event, aggregate in saved:
        topic = getattr(type(event), "TOPIC", "")
        if topic not in HAPPENINGS:
            continue
        if topic == "fapiao.invoice.acknowledged.v1" and not event.was_missing:
            continue  # the everyday case; only a late one (of a missing invoice) is news
        message, fields = HAPPENINGS[topic]
        extra = {
            "happening": topic.rsplit(".", 1)[0],
            "position": position,
            "tenant_id": getattr(aggregate, "tenant_id", None),
            "stream_id": str(event.originator_id),
            "invoice_key": getattr(aggregate, "invoice_key", None),
            "case_number": getattr(aggregate, "number", None),
            "actor": getattr(event, "actor", None),
            "source": getattr(event, "source", None),
            **{f: _plain(getattr(event, f, None)) for f in fields},
        }
        log.info(message, extra={k: v for k, v in extra.items() if v is not None})
