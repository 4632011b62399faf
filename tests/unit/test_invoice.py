"""The Invoice aggregate: given past events, when a command, then new events or a named error."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.errors import (
    CorrectionNotAllowedError,
    InvalidCommandFieldError,
    InvalidTransitionError,
)
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import validate_draft
from domain.invoices.status import InvoiceStatus
from tests.builders import a_draft, a_paper_draft, by

TODAY = datetime(2026, 11, 20, tzinfo=UTC).date()
ACK_AT = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def an_invoice(draft=None) -> Invoice:  # type: ignore[no-untyped-def]
    facts, _ = validate_draft(draft or a_draft(), TODAY)
    return Invoice.issue("T1", facts, by("key:clerk"))


def test_issuing_records_who_through_what_and_when() -> None:
    invoice = an_invoice()
    (issued,) = invoice.collect_events()
    assert isinstance(issued, Invoice.Issued)
    assert (issued.actor, issued.source) == ("key:clerk", "api")
    assert issued.occurred_at.tzinfo is not None and issued.total == Decimal("1130.00")


def test_the_happy_path_counts_attempts() -> None:
    invoice = an_invoice()
    invoice.submit(by(), "erp")
    invoice.fail_submission(by(), "network_timeout")
    invoice.submit(by(), "erp")
    invoice.acknowledge(by(), "ACK-1", ACK_AT, "poll")
    assert invoice.status is InvoiceStatus.ACKNOWLEDGED and invoice.submission_attempts == 2
    assert [type(e).__name__ for e in invoice.collect_events()] == [
        "Issued",
        "Submitted",
        "SubmissionFailed",
        "Submitted",
        "Acknowledged",
    ]


def test_an_illegal_step_names_the_status_and_the_step() -> None:
    invoice = an_invoice()
    with pytest.raises(InvalidTransitionError) as e:
        invoice.acknowledge(by(), "ACK-1", ACK_AT, "poll")
    assert (e.value.current, e.value.step) == ("issued", "acknowledge")
    assert str(e.value) == "cannot acknowledge an invoice that is issued"


def test_a_late_acknowledgement_of_a_missing_invoice_is_accepted_and_marked_late() -> None:
    invoice = an_invoice()
    invoice.submit(by(), "erp")
    invoice.mark_missing(by(), "person", "not in the platform's query")
    invoice.acknowledge(by(), "ACK-2", ACK_AT, "callback")
    acknowledged = invoice.collect_events()[-1]
    assert isinstance(acknowledged, Invoice.Acknowledged) and acknowledged.was_missing


def test_only_paper_invoices_can_be_voided() -> None:
    with pytest.raises(CorrectionNotAllowedError) as e:
        an_invoice().void(by(), "wrong buyer")
    assert e.value.rule == "void_electronic"
    paper = an_invoice(a_paper_draft())
    paper.void(by(), "all copies recovered")
    assert paper.status is InvoiceStatus.VOIDED


def _acknowledged() -> Invoice:
    invoice = an_invoice()
    invoice.submit(by(), "erp")
    invoice.acknowledge(by(), "ACK", ACK_AT, "poll")
    return invoice


def test_partial_red_reversals_add_up_and_may_not_exceed_the_total() -> None:
    invoice = _acknowledged()
    invoice.red_reverse(
        by(), "11010826112001615708", "26112000000135119999", "partial", "04", "130.00"
    )
    assert invoice.status is InvoiceStatus.PARTIALLY_REVERSED
    with pytest.raises(CorrectionNotAllowedError, match="exceeds"):
        invoice.red_reverse(
            by(), "11010826112001615709", "26112000000135119998", "partial", "02", "1000.01"
        )
    invoice.red_reverse(
        by(), "11010826112001615709", "26112000000135119998", "partial", "02", "1000.00"
    )
    assert invoice.status is InvoiceStatus.REVERSED and invoice.reversed_amount == Decimal(
        "1130.00"
    )


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"confirmation_number": "123"}, "confirmation_number"),
        ({"reason_code": "09"}, "reason_code"),
        ({"scope": "most"}, "scope"),
        ({"scope": "partial", "reason_code": "04", "amount": None}, "amount"),
    ],
)
def test_red_reversal_fields_are_checked(kwargs: dict[str, object], field: str) -> None:
    args = {
        "confirmation_number": "11010826112001615708",
        "red_invoice_key": "26112000000135119999",
        "scope": "full",
        "reason_code": "01",
    }
    args.update(kwargs)
    with pytest.raises(InvalidCommandFieldError) as e:
        _acknowledged().red_reverse(by(), **args)  # type: ignore[arg-type]
    assert e.value.field == field


def test_an_invoicing_error_needs_a_full_reversal() -> None:
    with pytest.raises(CorrectionNotAllowedError) as e:
        _acknowledged().red_reverse(
            by(), "11010826112001615708", "26112000000135119999", "partial", "01", "10.00"
        )
    assert e.value.rule == "partial_invoicing_error"


def test_detection_and_learning_channels_are_closed_lists() -> None:
    invoice = an_invoice()
    invoice.submit(by(), "erp")
    with pytest.raises(InvalidCommandFieldError):
        invoice.mark_missing(by(), "rumour")
    with pytest.raises(InvalidCommandFieldError):
        invoice.acknowledge(by(), "ACK", ACK_AT, "telepathy")


def test_provenance_needs_an_actor_and_an_aware_time() -> None:
    from domain.base import Provenance, Source

    with pytest.raises(InvalidCommandFieldError):
        Provenance("", Source.API, ACK_AT)
    with pytest.raises(InvalidCommandFieldError):
        Provenance("x", Source.API, datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize("draft", [a_draft(), a_paper_draft()], ids=["digital", "paper"])
def test_the_batch_paths_issued_event_is_the_one_issue_records(draft) -> None:  # type: ignore[no-untyped-def]
    """`issued_event` sets the data class's attributes in one step: the same fields, in the
    same order (the stored state's key order), the same values, equal as events."""
    import dataclasses

    facts, _ = validate_draft(draft, TODAY)
    (recorded,) = Invoice.issue("T1", facts, by("key:clerk")).collect_events()
    built = Invoice.issued_event("T1", facts, by("key:clerk"), recorded.timestamp)
    assert type(built) is Invoice.Issued
    names = [f.name for f in dataclasses.fields(Invoice.Issued)]
    assert list(vars(built)) == list(vars(recorded)) == names
    same_clock = {"occurred_at": recorded.occurred_at}
    assert dataclasses.replace(built, **same_clock) == recorded
    assert {k: v for k, v in vars(built).items() if k != "occurred_at"} == {
        k: v for k, v in vars(recorded).items() if k != "occurred_at"
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.total = Decimal("1")  # type: ignore[misc]
