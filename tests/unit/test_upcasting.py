"""Events stored by older code still load: each upcaster, from a stored v1 state literal."""

from __future__ import annotations

from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from application.invoices.ledger import InvoiceLedger
from domain.invoices.invoice import Invoice
from domain.remedies.reentry_application import ReEntryApplication
from tests.fakes import SettableClock

V1_MARKED_MISSING = (
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-20T02:00:00+00:00"},'
    b'"actor":"key:a","source":"api","occurred_at":{"_type_":"datetime_iso",'
    b'"_data_":"2026-11-20T02:00:00+00:00"},"detected_by":"person","note":"n","evidence":null}'
)
V1_ACKNOWLEDGED = (
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-20T02:00:00+00:00"},'
    b'"actor":"key:a","source":"api","occurred_at":{"_type_":"datetime_iso",'
    b'"_data_":"2026-11-20T02:00:00+00:00"},"platform_ref":"A","acknowledged_at":'
    b'{"_type_":"datetime_iso","_data_":"2026-11-20T02:00:00+00:00"},"learned_via":"poll",'
    b'"was_missing":true}'
)

V2_SUBMITTED = (
    b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-20T02:00:00+00:00"},'
    b'"actor":"key:a","source":"api","occurred_at":{"_type_":"datetime_iso",'
    b'"_data_":"2026-11-20T02:00:00+00:00"},"round":1,"review_due_at":'
    b'{"_type_":"datetime_iso","_data_":"2026-11-25T02:00:00+00:00"},"class_version":2}'
)


def decode(topic: str, state: bytes) -> object:
    ledger = InvoiceLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, SettableClock())
    return ledger.mapper.to_domain_event(StoredEvent(uuid4(), 3, topic, state))


def test_a_v1_marked_missing_reads_with_no_timer_fields() -> None:
    event = decode("fapiao.invoice.marked_missing.v1", V1_MARKED_MISSING)
    assert isinstance(event, Invoice.MarkedMissing)
    assert (event.submitted_at, event.window_seconds, event.due_at) == (None, None, None)
    assert event.detected_by == "person"


def test_a_v1_acknowledgement_reads_with_unknown_lateness() -> None:
    event = decode("fapiao.invoice.acknowledged.v1", V1_ACKNOWLEDGED)
    assert isinstance(event, Invoice.Acknowledged)
    assert event.was_missing and event.late_by_seconds is None


def test_a_v2_submission_reads_as_counted_monday_to_friday() -> None:
    event = decode("fapiao.reentry_application.submitted.v1", V2_SUBMITTED)
    assert isinstance(event, ReEntryApplication.Submitted)
    assert event.review_calendar == "Monday to Friday"
    assert event.review_calendar_note.startswith("counted Monday to Friday: submitted before")
