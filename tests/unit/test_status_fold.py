"""Property: for any sequence of commands, the status view is the fold of the events and agrees
with the aggregate replayed from them."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from application.invoices.status_view import fold
from domain.errors import DomainError
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import validate_draft
from tests.builders import a_draft, a_paper_draft, by

AT = datetime(2026, 11, 20, 3, tzinfo=UTC)
COMMANDS = {
    "submit": lambda inv, i: inv.submit(by(), "erp", f"B{i}"),
    "fail": lambda inv, i: inv.fail_submission(by(), "net", "timeout"),
    "ack": lambda inv, i: inv.acknowledge(by(), f"ACK{i}", AT, "poll"),
    "reject": lambda inv, i: inv.reject(by(), "E01", "bad"),
    "missing": lambda inv, i: inv.mark_missing(by(), "timer", "overdue"),
    "void": lambda inv, i: inv.void(by(), "recovered"),
    "red_full": lambda inv, i: inv.red_reverse(
        by(), "11010826112001615708", "26112000000135119999", "full", "01"
    ),
    "red_part": lambda inv, i: inv.red_reverse(
        by(), "11010826112001615708", "26112000000135119999", "partial", "04", "300.00"
    ),
}


def replay(events: list[Invoice.Event]) -> Invoice:
    invoice = None
    for e in events:
        invoice = e.mutate(invoice)
    assert isinstance(invoice, Invoice)
    return invoice


@settings(max_examples=300, deadline=None)
@given(paper=st.booleans(), steps=st.lists(st.sampled_from(sorted(COMMANDS)), max_size=25))
def test_the_status_view_is_the_fold_of_the_events(paper: bool, steps: list[str]) -> None:
    facts, _ = validate_draft((a_paper_draft if paper else a_draft)(), AT.date())
    invoice = Invoice.issue("T1", facts, by())
    for i, step in enumerate(steps):
        try:
            COMMANDS[step](invoice, i)
        except DomainError:
            pass  # refused commands change nothing
    events = list(invoice.collect_events())
    row = None
    for position, event in enumerate(events, start=1):
        row = fold(row, event, position)
    assert row is not None
    replayed = replay(events)
    assert row["status"] == replayed.status.value == invoice.status.value
    assert row["version"] == replayed.version == len(events)
    assert row["submission_attempts"] == replayed.submission_attempts
    assert row["reversed_amount"] == replayed.reversed_amount
    assert row["platform_ref"] == replayed.platform_ref
