"""invoice_status_history: each invoice's statuses with their validity intervals, by the
database's recorded_at, so "every invoice's status as of T" is one query with no replay."""

from __future__ import annotations

from typing import Any

from application.topics import events_of, topics_of
from domain.invoices.invoice import Invoice

NAME = "status_history"
EVENTS = events_of(Invoice)
TOPICS = topics_of(EVENTS)

_AFTER: dict[type, str] = {
    Invoice.Issued: "issued",
    Invoice.Submitted: "submitted",
    Invoice.SubmissionFailed: "submission_failed",
    Invoice.Acknowledged: "acknowledged",
    Invoice.Rejected: "rejected",
    Invoice.MarkedMissing: "missing",
    Invoice.Voided: "voided",
    Invoice.ReEntered: "re_entered",
}


def status_after(event: Any) -> str:
    """The invoice's status once `event` happened."""
    if isinstance(event, Invoice.RedReversed):
        # The domain records scope "full" whenever the reversal reaches the invoice's total.
        return "reversed" if event.scope == "full" else "partially_reversed"
    return _AFTER[type(event)]
