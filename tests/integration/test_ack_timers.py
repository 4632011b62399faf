"""Acknowledgement timers on a controllable clock, on both stores: maintenance windows pause
the window; two tickers never mark twice; a restart marks nothing twice and misses nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID

from application.invoices.lifecycle import (
    AcknowledgeRequest,
    SubmissionFailureRequest,
    SubmitRequest,
)
from domain.invoices.invoice import Invoice
from infrastructure.bootstrap import Services, build_services
from tests.builders import SELLER, a_draft, by
from tests.fakes import SettableClock

T = SELLER
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def catch_up(services: Services) -> None:
    for worker in services.workers.values():
        worker.catch_up()


def submitted(services: Services, n: int = 1, at: datetime = START) -> list[UUID]:
    results = services.ledger.issue_invoices(T, [a_draft() for _ in range(n)], by(at=at))
    for r in results:
        services.ledger.change_invoice(T, r.invoice_id, SubmitRequest(channel="erp"), by(at=at))
    catch_up(services)
    return [r.invoice_id for r in results]


def missing_events(services: Services, invoice_id: UUID) -> list[Invoice.MarkedMissing]:
    events = services.ledger.events.get(invoice_id)
    return [e for e in events if isinstance(e, Invoice.MarkedMissing)]


def test_no_acknowledgement_within_the_window_marks_missing_once(
    services: Services, clock: SettableClock
) -> None:
    (invoice_id,) = submitted(services)
    clock.set(START + timedelta(hours=23, minutes=59))
    assert services.ticker.tick().marked == []
    clock.set(START + timedelta(hours=24, minutes=1))
    assert services.ticker.tick().marked == [invoice_id]
    assert services.ticker.tick().marked == []
    catch_up(services)
    assert services.ticker.tick().marked == []
    (event,) = missing_events(services, invoice_id)
    assert (event.detected_by, event.source, event.actor) == ("timer", "timer", "system:ack-timer")
    assert event.submitted_at == START and event.window_seconds == 24 * 3600
    assert event.due_at == START + timedelta(hours=24)
    row = services.reader.get(T, invoice_id)
    assert row is not None and row["status"] == "missing"
    assert row["missing_detected_by"] == "timer"


def test_a_maintenance_window_pauses_the_clock(services: Services, clock: SettableClock) -> None:
    services.policies.declare_maintenance(
        T, START + timedelta(hours=10), START + timedelta(hours=12), "platform upgrade", by()
    )
    (invoice_id,) = submitted(services)
    timer = services.timers.timer(invoice_id)
    assert timer is not None and timer.due_at == START + timedelta(hours=26)
    clock.set(START + timedelta(hours=25))
    assert services.ticker.tick().marked == []
    clock.set(START + timedelta(hours=26, seconds=1))
    assert services.ticker.tick().marked == [invoice_id]


def test_a_window_declared_after_the_upload_moves_the_due_time(
    services: Services, clock: SettableClock
) -> None:
    (invoice_id,) = submitted(services)
    clock.set(START + timedelta(hours=25))
    window_id, _ = services.policies.declare_maintenance(
        T, START + timedelta(hours=3), START + timedelta(hours=6), "outage, announced late", by()
    )
    # Before the view catches up, the ticker checks the policy itself and holds back.
    report = services.ticker.tick()
    assert report.marked == [] and report.not_yet_due == 1
    catch_up(services)
    assert services.timers.timer(invoice_id).due_at == START + timedelta(hours=27)  # type: ignore[union-attr]
    services.policies.withdraw_maintenance(T, window_id, by())
    catch_up(services)
    assert services.ticker.tick().marked == [invoice_id]


def test_acknowledged_failed_and_resubmitted_invoices_follow_their_latest_upload(
    services: Services, clock: SettableClock
) -> None:
    acked, resubmitted = submitted(services, 2)
    services.ledger.change_invoice(
        T, acked, AcknowledgeRequest(platform_ref="A"), by(at=START + timedelta(hours=1))
    )
    later = START + timedelta(hours=20)
    services.ledger.change_invoice(
        T, resubmitted, SubmissionFailureRequest(reason_code="timeout"), by(at=later)
    )
    services.ledger.change_invoice(T, resubmitted, SubmitRequest(channel="erp"), by(at=later))
    catch_up(services)
    clock.set(START + timedelta(hours=30))
    assert services.ticker.tick().marked == []
    clock.set(later + timedelta(hours=24, seconds=1))
    assert services.ticker.tick().marked == [resubmitted]
    (event,) = missing_events(services, resubmitted)
    assert event.submitted_at == later and "attempt 2" in event.note


def test_a_late_acknowledgement_is_accepted_and_says_how_late(
    services: Services, clock: SettableClock
) -> None:
    (invoice_id,) = submitted(services)
    clock.set(START + timedelta(hours=25))
    services.ticker.tick()
    ack_at = START + timedelta(hours=30)
    result = services.ledger.change_invoice(
        T,
        invoice_id,
        AcknowledgeRequest(platform_ref="ACK-LATE", acknowledged_at=ack_at, learned_via="callback"),
        by(at=ack_at),
    )
    assert result.status == "acknowledged"
    ack = services.ledger.events.get(invoice_id, desc=True, limit=1)
    (event,) = list(ack)
    assert isinstance(event, Invoice.Acknowledged)
    assert event.was_missing and event.late_by_seconds == 6 * 3600


def test_a_new_window_applies_to_later_uploads_only(
    services: Services, clock: SettableClock
) -> None:
    (first,) = submitted(services)
    services.policies.set_ack_window(T, timedelta(hours=2), by())
    (second,) = submitted(services)
    assert services.timers.timer(first).window_seconds == 24 * 3600  # type: ignore[union-attr]
    assert services.timers.timer(second).due_at == START + timedelta(hours=2)  # type: ignore[union-attr]
    assert services.policies.get_policy(T).ack_window == timedelta(hours=2)


def test_two_tickers_never_mark_the_same_invoice_twice(
    services: Services, clock: SettableClock
) -> None:
    ids = submitted(services, 20)
    twin = build_services(services.settings, clock)  # another process's ticker
    try:
        clock.set(START + timedelta(days=2))
        reports = []
        barrier = threading.Barrier(2)

        def run(s: Services) -> None:
            barrier.wait()
            reports.append(s.ticker.tick())

        threads = [threading.Thread(target=run, args=(s,)) for s in (services, twin)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        twin.close()
    marked = [i for r in reports for i in r.marked]
    assert sorted(marked) == sorted(ids)
    assert all(len(missing_events(services, i)) == 1 for i in ids)


def test_a_restart_after_a_crash_marks_nothing_twice_and_misses_nothing(
    services: Services, clock: SettableClock
) -> None:
    ids = submitted(services, 12)
    clock.set(START + timedelta(days=2))
    services.ticker.batch = 5
    first = services.ticker.tick()  # then the process dies before its views catch up
    assert len(first.marked) == 5
    restarted = build_services(services.settings, clock)
    try:
        again = restarted.ticker.tick()  # the same due rows, stale: nothing is marked twice
        assert again.already_resolved >= 0 and set(again.marked).isdisjoint(first.marked)
        catch_up(restarted)
        while restarted.ticker.tick().marked:
            catch_up(restarted)
    finally:
        restarted.close()
    assert all(len(missing_events(services, i)) == 1 for i in ids)
    catch_up(services)
    assert services.reader.counts(T) == {"missing": 12}
