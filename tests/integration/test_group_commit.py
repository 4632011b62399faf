"""Group commit (FAPIAO_GROUP_COMMIT) on both stores: concurrent commands share transactions,
each still its own decision, optimistic check and receipt; a conflicted member is retried, a
refused one refused alone, an idempotent repeat in the same group answers once, and listeners
hear every committed event once and no rolled-back one.

To make a group deterministically, the test holds the store's write lock from outside: the
first command (the plug) leads a group of its own and waits on the lock, the others queue
behind it, and once the lock is let go they commit as the next group."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from application.dto import Idempotency
from application.invoices.lifecycle import AcknowledgeRequest, SubmitRequest
from application.service_errors import InvoiceAlreadyExistsError
from domain.invoices.invoice import Invoice
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store.group_commit import GroupCommit
from tests.builders import SELLER, a_draft, by
from tests.fakes import SettableClock

T = SELLER


@pytest.fixture
def grouped(settings: Settings, clock: SettableClock) -> Iterator[Services]:
    svc = build_services(
        settings.model_copy(update={"group_commit": True, "group_commit_wait_ms": 2.0}), clock
    )
    yield svc
    svc.close()


def group_of(services: Services) -> GroupCommit:
    group = getattr(services.ledger.recorder, "group", None)
    assert isinstance(group, GroupCommit)
    return group


def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    ends = time.monotonic() + timeout
    while not check():
        if time.monotonic() > ends:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def write_lock_held(services: Services) -> Iterator[None]:
    """Hold the event store's write lock from another connection until the block ends."""
    settings = services.settings
    if settings.is_postgres:
        url = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
            yield
            conn.rollback()
    else:
        lite = sqlite3.connect(settings.sqlite_path, isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            yield
            lite.execute("ROLLBACK")
        finally:
            lite.close()


class Notifications:
    """PostgreSQL's own count of committed insert transactions: each NOTIFYs ledger_events
    once (repeats in one transaction are folded, rolled-back ones never delivered)."""

    def __init__(self, services: Services) -> None:
        url = services.settings.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN ledger_events")

    def count(self) -> int:
        return sum(1 for _ in self.conn.notifies(timeout=0.5))

    def close(self) -> None:
        self.conn.close()


def in_group(services: Services, commands: list[Callable[[], Any]]) -> list[Any]:
    """Run `commands` concurrently so that they commit as one group behind a plug: each
    result, or the exception it raised."""
    group = group_of(services)
    results: list[Any] = [None] * len(commands)
    services.ledger.recorder.max_notification_id()  # the store's first connection sets WAL

    def run(i: int, command: Callable[[], Any]) -> None:
        try:
            results[i] = command()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            results[i] = e

    with write_lock_held(services):
        plug = threading.Thread(
            target=lambda: services.ledger.issue_invoice(T, a_draft(), by()), daemon=True
        )
        plug.start()
        _until(lambda: group.queued() == (True, 0), "the plug to lead")
        threads = [
            threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(commands)
        ]
        for t in threads:
            t.start()
        _until(lambda: group.queued()[1] >= len(commands), "the commands to queue")
    plug.join(15)
    for t in threads:
        t.join(15)
    assert not plug.is_alive() and not any(t.is_alive() for t in threads)
    return results


class Heard:
    """What the ledger's listeners hear: every event's position, and each save's last."""

    def __init__(self, services: Services) -> None:
        self.positions: list[int] = []
        self.lasts: list[int] = []
        self.lock = threading.Lock()
        services.ledger.on_events(self.events)
        services.ledger.on_saved(self.saved)

    def events(self, saved: list[Any]) -> None:
        with self.lock:
            self.positions.extend(p for p, _, _ in saved)

    def saved(self, last: int) -> None:
        with self.lock:
            self.lasts.append(last)


def stored_positions(services: Services, after: int) -> list[int]:
    return [r.position for r in services.ledger.event_log.select_rows(after, 10_000)]


def test_concurrent_commands_share_transactions(grouped: Services) -> None:
    group = group_of(grouped)
    heard = Heard(grouped)
    notes = Notifications(grouped) if grouped.settings.is_postgres else None
    before = (group.transactions, group.commands)
    try:
        results = in_group(
            grouped, [lambda: grouped.ledger.issue_invoice(T, a_draft(), by()) for _ in range(12)]
        )
        transactions = group.transactions - before[0]
        assert group.commands - before[1] == 13  # the plug and the 12
        assert transactions == 2  # the plug alone, then the 12 together
        if notes is not None:  # the database agrees: two insert transactions committed
            assert notes.count() == 2
    finally:
        if notes is not None:
            notes.close()
    assert all(not isinstance(r, Exception) for r in results)
    positions = sorted(r.position for r in results)
    assert positions == list(range(positions[0], positions[0] + 12))  # one block, no gaps
    for r in results:
        assert grouped.ledger.get_invoice_state(T, r.invoice_id).status is InvoiceStatus.ISSUED
    assert sorted(heard.positions) == stored_positions(grouped, 0)  # each heard once
    assert len(heard.lasts) == 13


def test_a_conflicted_member_decides_again_and_the_others_commit(grouped: Services) -> None:
    ledger = grouped.ledger
    issued = ledger.issue_invoice(T, a_draft(), by())
    start = stored_positions(grouped, 0)[-1]
    heard = Heard(grouped)
    both_decided = threading.Barrier(2)
    decisions: list[str] = []

    def step() -> str:
        first_time = threading.local()
        first_time.value = True

        def decide() -> tuple[list[Any], dict[str, Any]]:
            invoice = ledger.get_invoice_state(T, issued.invoice_id)
            if invoice.status is InvoiceStatus.ISSUED:
                SubmitRequest(channel="erp").apply(invoice, by())
                decisions.append("submit")
            else:
                AcknowledgeRequest(platform_ref="ACK", learned_via="poll").apply(invoice, by())
                decisions.append("acknowledge")
            if first_time.value:  # both decide on the same version before either saves
                first_time.value = False
                both_decided.wait(5)
            return [invoice], {"status": invoice.status.value}

        outcome = ledger.run_once(T, by(), decide)
        return str(outcome.body["status"])

    others: list[Callable[[], Any]] = [
        lambda: ledger.issue_invoice(T, a_draft(), by()) for _ in range(4)
    ]
    results = in_group(grouped, [step, step, *others])
    assert sorted(results[:2]) == ["acknowledged", "submitted"]
    assert sorted(decisions) == ["acknowledge", "submit", "submit"]  # one decided again
    assert all(not isinstance(r, Exception) for r in results[2:])
    state: Invoice = ledger.get_invoice_state(T, issued.invoice_id)
    assert state.version == 3 and state.status is InvoiceStatus.ACKNOWLEDGED
    # heard: every committed event once, never the conflicted member's rolled-back submit
    assert sorted(heard.positions) == stored_positions(grouped, start)
    assert len(heard.positions) == 1 + 2 + 4  # plug, submit + acknowledge, the 4 issues


def test_a_refused_member_is_refused_alone(grouped: Services) -> None:
    """Its aggregate breaks the unique constraint (that invoice is already stored): its rows
    are rolled back to its savepoint, the others' kept."""
    ledger = grouped.ledger
    draft = a_draft()
    ledger.issue_invoice(T, draft, by())
    start = stored_positions(grouped, 0)[-1]
    heard = Heard(grouped)
    fresh = [a_draft() for _ in range(5)]
    commands: list[Callable[[], Any]] = [partial(ledger.issue_invoice, T, d, by()) for d in fresh]
    commands.insert(2, partial(ledger.issue_invoice, T, draft, by()))
    results = in_group(grouped, commands)
    assert isinstance(results[2], InvoiceAlreadyExistsError)
    kept = [r for i, r in enumerate(results) if i != 2]
    assert all(not isinstance(r, Exception) for r in kept)
    for r in kept:
        assert ledger.get_invoice_state(T, r.invoice_id).version == 1
    assert sorted(heard.positions) == stored_positions(grouped, start)
    assert len(heard.positions) == 1 + 5  # the plug and the five


def test_an_idempotent_repeat_in_the_same_group_answers_once(grouped: Services) -> None:
    ledger = grouped.ledger
    draft = a_draft()
    key = Idempotency("group-1", "fp-1")
    start = stored_positions(grouped, 0)
    results = in_group(
        grouped,
        [
            lambda: ledger.issue_invoice(T, draft, by(), key),
            lambda: ledger.issue_invoice(T, a_draft(), by()),
            lambda: ledger.issue_invoice(T, draft, by(), key),
            lambda: ledger.issue_invoice(T, draft, by(), key),
        ],
    )
    repeats = [results[0], results[2], results[3]]
    assert all(not isinstance(r, Exception) for r in results)
    assert len({r.invoice_id for r in repeats}) == 1
    assert sorted(r.replayed for r in repeats) == [False, True, True]
    assert len({r.position for r in repeats}) == 1  # the same answer, the receipt's position
    stream = ledger.event_log.select_stream(repeats[0].invoice_id)
    assert len(stream) == 1  # one effect
    new = len(stored_positions(grouped, start[-1] if start else 0))
    assert new == 1 + 2 + 1  # the plug, the invoice and its receipt, the other invoice


def test_a_lone_command_is_saved_at_once_without_waiting(grouped: Services) -> None:
    """The wait is only for company a previous group had: a lone client pays none of it."""
    group = group_of(grouped)
    group.max_wait = 5.0  # if a lone command waited, this would show
    started = time.monotonic()
    for _ in range(3):
        grouped.ledger.issue_invoice(T, a_draft(), by())
    assert time.monotonic() - started < 5.0
    assert group.queued() == (False, 0)


def test_grouping_is_off_by_the_setting(settings: Settings, clock: SettableClock) -> None:
    svc = build_services(settings.model_copy(update={"group_commit": False}), clock)
    try:
        assert getattr(svc.ledger.recorder, "group", None) is None
        made = svc.ledger.issue_invoice(T, a_draft(), by())
        assert svc.ledger.get_invoice_state(T, made.invoice_id).version == 1
    finally:
        svc.close()


def test_the_stored_rows_of_a_group_are_those_of_single_saves(grouped: Services) -> None:
    """Same table, same columns: a grouped command's rows read back as a plain save's."""
    results = in_group(
        grouped, [lambda: grouped.ledger.issue_invoice(T, a_draft(), by()) for _ in range(3)]
    )
    for r in results:
        (row,) = grouped.ledger.event_log.select_stream(r.invoice_id)
        assert row.position == r.position and row.originator_version == 1
        assert row.topic == "fapiao.invoice.issued.v1"
        event = grouped.ledger.mapper.to_domain_event(row)  # type: ignore[arg-type]
        assert isinstance(event.originator_id, UUID) and event.originator_id == r.invoice_id


def test_a_member_whose_insert_fails_otherwise_does_not_fail_the_others(
    grouped: Services,
) -> None:
    """Not a constraint: the store refuses the value itself (PostgreSQL text holds no NUL,
    SQLite binds no object), so the group's statement fails whole; each member is then
    inserted alone, and only the bad one fails."""
    recorder = grouped.ledger.recorder
    made = grouped.ledger.issue_invoice(T, a_draft(), by())
    (row,) = grouped.ledger.event_log.select_stream(made.invoice_id)

    def good(oid: UUID) -> StoredEvent:
        return StoredEvent(oid, 1, row.topic, row.state)

    def bad(oid: UUID) -> StoredEvent:
        if grouped.settings.is_postgres:
            return StoredEvent(oid, 1, "fapiao.invoice.issued.v1\x00", row.state)
        return StoredEvent(oid, 1, row.topic, object())  # type: ignore[arg-type]

    ids = [uuid4() for _ in range(4)]
    events = [good(ids[0]), good(ids[1]), bad(ids[2]), good(ids[3])]
    results = in_group(
        grouped, [partial(recorder.insert_events, [e], group_commit=True) for e in events]
    )
    assert isinstance(results[2], Exception)
    for i in (0, 1, 3):
        (position,) = results[i]
        assert grouped.ledger.event_log.position_of(ids[i], 1) == position
    assert grouped.ledger.event_log.position_of(ids[2], 1) is None
