"""cases: one row per re-entry application and complaint, with status, owner and the next
deadlines the case ticker watches (review, reply reminder, reply, escalation)."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from application.topics import events_of, topics_of
from domain.calendar import SHANGHAI
from domain.remedies.complaint import Complaint
from domain.remedies.reentry_application import ReEntryApplication

NAME = "cases"
EVENTS = (*events_of(ReEntryApplication), *events_of(Complaint))
TOPICS = topics_of(EVENTS)
Row = dict[str, Any]


def handles(event: object) -> bool:
    return isinstance(event, EVENTS)


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), SHANGHAI)


def _reply_times(row: Row) -> None:
    due_on = row["reply_due_on"]
    if due_on is None:
        row["reply_remind_at"] = row["reply_due_at"] = None
        return
    row["reply_remind_at"] = start_of(due_on - timedelta(days=row["reminder_days"])) + timedelta(
        hours=9
    )
    row["reply_due_at"] = start_of(due_on + timedelta(days=1))


def _escalation(row: Row) -> None:
    pending = [
        (e["due_on"], i) for i, e in enumerate(json.loads(row["escalations"])) if not e["overdue"]
    ]
    if pending:
        due_on, index = min(pending)
        row["escalation_index"] = index
        row["escalation_due_at"] = start_of(date.fromisoformat(due_on) + timedelta(days=1))
    else:
        row["escalation_index"], row["escalation_due_at"] = None, None


def fold(row: Row | None, event: Any, position: int) -> Row:
    if isinstance(event, ReEntryApplication.Drafted | Complaint.Lodged):
        complaint = isinstance(event, Complaint.Lodged)
        row = {
            "case_id": event.originator_id,
            "tenant_id": event.tenant_id,
            "case_type": "complaint" if complaint else "reentry",
            "number": event.number,
            "status": "open" if complaint else "drafted",
            "owner": event.complainant if isinstance(event, Complaint.Lodged) else event.applicant,
            "invoice_ids": ",".join(event.invoice_ids),
            "review_round": 0,
            "review_due_at": None,
            "reply_due_on": None,
            "reminder_days": 0,
            "reply_remind_at": None,
            "reply_due_at": None,
            "escalations": "[]",
            "escalation_index": None,
            "escalation_due_at": None,
            "flagged": 0,
            "opened_at": event.occurred_at,
        }
        if isinstance(event, Complaint.Lodged):
            row["reply_due_on"], row["reminder_days"] = event.reply_due_on, event.reminder_days
            _reply_times(row)
    else:
        if row is None:
            raise ValueError(f"{type(event).__name__} for unknown case {event.originator_id}")
        row = dict(row)
        _apply(row, event)
    row["updated_at"] = event.occurred_at
    row["position"] = position
    return row


def _apply(row: Row, e: Any) -> None:
    A, C = ReEntryApplication, Complaint
    if isinstance(e, A.Submitted):
        row.update(status="submitted", review_round=e.round, review_due_at=e.review_due_at)
    elif isinstance(e, A.Reviewed):
        row["status"] = "reviewed"
    elif isinstance(e, A.Approved | A.Returned | A.Withdrawn):
        row["status"] = {A.Approved: "approved", A.Returned: "returned", A.Withdrawn: "withdrawn"}[
            type(e)
        ]
        row["review_due_at"] = None
    elif isinstance(e, A.ReviewOverdue):
        row["review_due_at"] = None
        row["flagged"] = 1
    elif isinstance(e, C.ExchangeLogged) and e.promised_reply_on is not None:
        row["reply_due_on"] = e.promised_reply_on
        _reply_times(row)
    elif isinstance(e, C.ReplyDeadlineSet):
        row["reply_due_on"], row["reminder_days"] = e.due_on, e.reminder_days
        _reply_times(row)
    elif isinstance(e, C.ReplyReminderDue):
        row["reply_remind_at"] = None
    elif isinstance(e, C.ReplyOverdue):
        row["reply_due_at"] = None
        row["flagged"] = 1
    elif isinstance(e, C.Escalated):
        escalations = json.loads(row["escalations"])
        escalations.append({"step": e.step, "due_on": e.due_on.isoformat(), "overdue": False})
        row["escalations"] = json.dumps(escalations)
        _escalation(row)
    elif isinstance(e, C.EscalationOverdue):
        escalations = json.loads(row["escalations"])
        escalations[e.index]["overdue"] = True
        row["escalations"] = json.dumps(escalations)
        _escalation(row)
    elif isinstance(e, C.Resolved):
        row.update(
            status=e.outcome,
            reply_remind_at=None,
            reply_due_at=None,
            escalation_index=None,
            escalation_due_at=None,
            flagged=1 if e.invoices_still_missing else 0,
        )
