"""Complaint case (投诉/申诉): a demand to the tax bureau about invoices it does not have, with
evidence, a log of every exchange, a reply deadline (reminder before, overdue after),
escalation steps each with its own deadline, and a resolution.

Deadlines are Beijing dates: a reply due on D is overdue from D+1 00:00 Asia/Shanghai.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.errors import InvalidCommandFieldError, InvalidTransitionError
from domain.remedies.attachment_ref import AttachmentRef

CHANNELS = (
    "hotline_12366",
    "online_portal",
    "tax_service_hall",
    "registered_letter",
    "email",
    "official_social_account",
)
ESCALATIONS = ("written_appeal", "third_party")
OUTCOMES = ("resolved", "withdrawn", "rejected")


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidCommandFieldError(field, f"must be one of {', '.join(allowed)}", "enum")
    return value


class Complaint(BaseAggregate[UUID]):
    TOPIC = "fapiao.complaint"

    class Event(LedgerEvent):
        pass

    class Lodged(Event, AggregateCreated):
        """A complaint was lodged through `channel` with the complainant's demand."""

        TOPIC = "fapiao.complaint.lodged.v1"
        tenant_id: str
        number: str
        complainant: str
        invoice_ids: list[str]
        channel: str
        demand: str
        reply_due_on: date | None
        reminder_days: int

        def apply(self, c: Complaint) -> None:
            c.tenant_id, c.number, c.complainant = self.tenant_id, self.number, self.complainant
            c.invoice_ids, c.channel, c.demand = list(self.invoice_ids), self.channel, self.demand
            c.reply_due_on, c.reminder_days = self.reply_due_on, self.reminder_days

    class EvidenceAdded(Event):
        """Evidence attached (hash, name, type and size of the stored file)."""

        TOPIC = "fapiao.complaint.evidence_added.v1"
        attachment: dict[str, Any]

        def apply(self, c: Complaint) -> None:
            c.evidence.append(dict(self.attachment))

    class ExchangeLogged(Event):
        """One exchange with the bureau: when, how, with whom (and their role), what was said
        and promised. A promised reply date becomes the reply deadline."""

        TOPIC = "fapiao.complaint.exchange_logged.v1"
        at: datetime
        channel: str
        counterpart: str
        counterpart_role: str
        said: str
        promised: str
        promised_reply_on: date | None

        def apply(self, c: Complaint) -> None:
            c.log_entries += 1
            if self.promised_reply_on is not None:
                c.reply_due_on = self.promised_reply_on

    class ReplyDeadlineSet(Event):
        """The reply is due on `due_on`; a reminder comes `reminder_days` before."""

        TOPIC = "fapiao.complaint.reply_deadline_set.v1"
        due_on: date
        reminder_days: int

        def apply(self, c: Complaint) -> None:
            c.reply_due_on, c.reminder_days = self.due_on, self.reminder_days

    class ReplyReminderDue(Event):
        """The reply due on `due_on` is near (the reminder fired once for that date)."""

        TOPIC = "fapiao.complaint.reply_reminder_due.v1"
        due_on: date

        def apply(self, c: Complaint) -> None:
            c.reminded_for = self.due_on

    class ReplyOverdue(Event):
        """No reply by the end of `due_on` (fired once for that date)."""

        TOPIC = "fapiao.complaint.reply_overdue.v1"
        due_on: date

        def apply(self, c: Complaint) -> None:
            c.overdue_for = self.due_on

    class Escalated(Event):
        """Escalation step `step` (written appeal, third party) to `to`, due by `due_on`."""

        TOPIC = "fapiao.complaint.escalated.v1"
        step: str
        to: str
        note: str
        due_on: date

        def apply(self, c: Complaint) -> None:
            c.escalations.append(
                {"step": self.step, "to": self.to, "due_on": self.due_on, "overdue": False}
            )

    class EscalationOverdue(Event):
        """Escalation number `index` (from 0) got no answer by its date."""

        TOPIC = "fapiao.complaint.escalation_overdue.v1"
        index: int

        def apply(self, c: Complaint) -> None:
            c.escalations[self.index]["overdue"] = True

    class Resolved(Event):
        """Closed with an outcome. `invoices_still_missing` lists linked invoices the platform
        still lacked at that moment: such a resolution is flagged."""

        TOPIC = "fapiao.complaint.resolved.v1"
        outcome: str
        text: str
        invoices_still_missing: list[str]

        def apply(self, c: Complaint) -> None:
            c.status = self.outcome
            c.still_missing = list(self.invoices_still_missing)

    def __init__(self) -> None:
        self.tenant_id = self.number = self.complainant = self.channel = self.demand = ""
        self.invoice_ids: list[str] = []
        self.evidence: list[dict[str, Any]] = []
        self.log_entries = 0
        self.reply_due_on: date | None = None
        self.reminder_days = 2
        self.reminded_for: date | None = None
        self.overdue_for: date | None = None
        self.escalations: list[dict[str, Any]] = []
        self.status = "open"
        self.still_missing: list[str] = []

    @classmethod
    def lodge(
        cls,
        complaint_id: UUID,
        tenant_id: str,
        number: str,
        complainant: str,
        invoice_ids: list[UUID],
        channel: str,
        demand: str,
        reply_due_on: date | None,
        reminder_days: int,
        by: Provenance,
    ) -> Complaint:
        if not invoice_ids:
            raise InvalidCommandFieldError("invoice_ids", "at least one invoice", "required")
        if not demand.strip():
            raise InvalidCommandFieldError("demand", "state the demand in your words", "required")
        if not 0 <= reminder_days <= 30:
            raise InvalidCommandFieldError("reminder_days", "between 0 and 30", "range")
        return cls._create(
            cls.Lodged,
            id=complaint_id,
            **by.fields(),
            tenant_id=tenant_id,
            number=number,
            complainant=complainant,
            invoice_ids=[str(i) for i in invoice_ids],
            channel=_choice("channel", channel, CHANNELS),
            demand=demand.strip(),
            reply_due_on=reply_due_on,
            reminder_days=reminder_days,
        )

    def _open(self, step: str) -> None:
        if self.status != "open":
            raise InvalidTransitionError(self.status, step, "a complaint")

    def add_evidence(self, by: Provenance, ref: AttachmentRef) -> None:
        self._open("add evidence to")
        self.trigger_event(self.EvidenceAdded, **by.fields(), attachment=ref.to_dict())

    def log_exchange(
        self,
        by: Provenance,
        at: datetime,
        channel: str,
        counterpart: str,
        counterpart_role: str,
        said: str,
        promised: str = "",
        promised_reply_on: date | None = None,
    ) -> None:
        self._open("log an exchange on")
        if at.tzinfo is None:
            raise InvalidCommandFieldError("at", "must carry a time zone", "aware")
        if not said.strip():
            raise InvalidCommandFieldError("said", "what was said", "required")
        self.trigger_event(
            self.ExchangeLogged,
            **by.fields(),
            at=at,
            channel=_choice("channel", channel, CHANNELS),
            counterpart=counterpart.strip(),
            counterpart_role=counterpart_role,
            said=said.strip(),
            promised=promised.strip(),
            promised_reply_on=promised_reply_on,
        )

    def set_reply_deadline(self, by: Provenance, due_on: date, reminder_days: int) -> None:
        self._open("set a deadline on")
        if not 0 <= reminder_days <= 30:
            raise InvalidCommandFieldError("reminder_days", "between 0 and 30", "range")
        self.trigger_event(
            self.ReplyDeadlineSet, **by.fields(), due_on=due_on, reminder_days=reminder_days
        )

    def remind(self, by: Provenance, due_on: date) -> None:
        if self.status != "open" or self.reply_due_on != due_on or self.reminded_for == due_on:
            raise InvalidTransitionError(self.status, "remind about", "a complaint")
        self.trigger_event(self.ReplyReminderDue, **by.fields(), due_on=due_on)

    def flag_reply_overdue(self, by: Provenance, due_on: date) -> None:
        if self.status != "open" or self.reply_due_on != due_on or self.overdue_for == due_on:
            raise InvalidTransitionError(self.status, "flag as overdue", "a complaint")
        self.trigger_event(self.ReplyOverdue, **by.fields(), due_on=due_on)

    def escalate(self, by: Provenance, step: str, to: str, note: str, due_on: date) -> None:
        self._open("escalate")
        if not to.strip():
            raise InvalidCommandFieldError("to", "to whom", "required")
        self.trigger_event(
            self.Escalated,
            **by.fields(),
            step=_choice("step", step, ESCALATIONS),
            to=to.strip(),
            note=note,
            due_on=due_on,
        )

    def flag_escalation_overdue(self, by: Provenance, index: int) -> None:
        if (
            self.status != "open"
            or not 0 <= index < len(self.escalations)
            or (self.escalations[index]["overdue"])
        ):
            raise InvalidTransitionError(self.status, "flag the escalation of", "a complaint")
        self.trigger_event(self.EscalationOverdue, **by.fields(), index=index)

    def resolve(self, by: Provenance, outcome: str, text: str, still_missing: list[UUID]) -> None:
        self._open("resolve")
        self.trigger_event(
            self.Resolved,
            **by.fields(),
            outcome=_choice("outcome", outcome, OUTCOMES),
            text=text,
            invoices_still_missing=[str(i) for i in still_missing],
        )
