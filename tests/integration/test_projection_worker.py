"""The projection worker on both stores: exactly once, batched, rebuildable, one active runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from application.invoices.lifecycle import (
    AcknowledgeRequest,
    MissingReportRequest,
    RejectRequest,
    SubmissionFailureRequest,
    SubmitRequest,
)
from application.service_errors import ProjectionLagError
from domain.errors import DomainError
from infrastructure.bootstrap import Services
from infrastructure.store.tables import invoice_status
from tests.builders import SELLER, a_draft, by

T = SELLER
ROOT = Path(__file__).resolve().parents[2]


def view(services: Services) -> dict[Any, dict[str, Any]]:
    with services.engine.connect() as conn:
        return {r.invoice_id: dict(r._mapping) for r in conn.execute(select(invoice_status))}


def issue_and_walk(services: Services, n: int) -> list[Any]:
    ledger = services.ledger
    results = ledger.issue_invoices(T, [a_draft() for _ in range(n)], by())
    for i, r in enumerate(results):
        ledger.change_invoice(T, r.invoice_id, SubmitRequest(channel="erp"), by())
        if i % 3 == 0:
            ledger.change_invoice(
                T, r.invoice_id, AcknowledgeRequest(platform_ref=f"A{i}", learned_via="poll"), by()
            )
        elif i % 3 == 1:
            ledger.change_invoice(
                T, r.invoice_id, SubmissionFailureRequest(reason_code="net"), by()
            )
            ledger.change_invoice(T, r.invoice_id, SubmitRequest(channel="erp"), by())
    return [r.invoice_id for r in results]


def assert_view_matches_aggregates(services: Services, ids: list[Any]) -> None:
    rows = view(services)
    for invoice_id in ids:
        invoice = services.ledger.get_invoice_state(T, invoice_id)
        row = rows[invoice_id]
        assert (row["status"], row["version"], row["submission_attempts"]) == (
            invoice.status.value,
            invoice.version,
            invoice.submission_attempts,
        )


def test_catch_up_in_small_batches_applies_every_event_once(services: Services) -> None:
    ids = issue_and_walk(services, 12)
    worker = services.worker("invoice_status")
    worker.batch_size = 5
    status = services.projection_status()[0]
    assert status["lag"] == status["head"] > 0
    consumed = worker.catch_up()
    assert consumed == worker.head()
    assert_view_matches_aggregates(services, ids)
    assert services.projection_status()[0]["lag"] == 0
    assert worker.process_batch() == 0


def test_an_undecodable_event_is_dead_lettered_and_the_projection_goes_on(
    services: Services,
) -> None:
    import uuid

    services.ledger.issue_invoice(T, a_draft(), by())
    services.ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=uuid.uuid4(),
                originator_version=1,
                topic="fapiao.nonsense.v9",
                state=b"{}",
            )
        ]
    )
    last = services.ledger.issue_invoice(T, a_draft(), by())
    worker = services.worker("invoice_status")
    worker.catch_up()
    assert worker.position() == last.position
    assert worker.dead_letter_count() == 1
    assert len(view(services)) == 2


def test_an_event_that_does_not_fit_the_view_is_dead_lettered(services: Services) -> None:
    issued = services.ledger.issue_invoice(T, a_draft(), by())
    worker = services.worker("invoice_status")
    worker.catch_up()
    # Replaying from zero over an existing view makes Issued arrive for a known invoice.
    with services.write_engine.begin() as conn:
        conn.execute(worker.tracking.delete())
    worker.catch_up()
    assert worker.dead_letter_count() == 1
    assert view(services)[issued.invoice_id]["version"] == 1


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["submit", "fail", "ack", "reject", "missing", "process"]),
        ),
        min_size=1,
        max_size=40,
    ),
    batch=st.integers(1, 7),
)
def test_a_rebuild_equals_incremental_processing(
    services: Services, plan: list[tuple[int, str]], batch: int
) -> None:
    ledger = services.ledger
    worker = services.worker("invoice_status")
    worker.batch_size = batch
    ids = [r.invoice_id for r in ledger.issue_invoices(T, [a_draft() for _ in range(6)], by())]
    steps = {
        "submit": lambda i: ledger.change_invoice(T, i, SubmitRequest(channel="erp"), by()),
        "fail": lambda i: ledger.change_invoice(
            T, i, SubmissionFailureRequest(reason_code="net"), by()
        ),
        "ack": lambda i: ledger.change_invoice(
            T, i, AcknowledgeRequest(platform_ref="A", learned_via="poll"), by()
        ),
        "reject": lambda i: ledger.change_invoice(T, i, RejectRequest(reason_code="E1"), by()),
        "missing": lambda i: ledger.change_invoice(
            T, i, MissingReportRequest(detected_by="timer"), by()
        ),
    }
    for index, step in plan:
        if step == "process":
            worker.process_batch()
            continue
        try:
            steps[step](ids[index])
        except DomainError:
            pass
    worker.catch_up()
    incremental = view(services)
    worker.reset()
    assert view(services) == {}
    worker.batch_size = 500
    worker.catch_up()
    assert view(services) == incremental
    assert worker.dead_letter_count() == 0


def test_a_worker_killed_mid_batch_applies_every_event_exactly_once(services: Services) -> None:
    ids = issue_and_walk(services, 30)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/integration/crash_worker.py"),
            services.settings.url.render_as_string(hide_password=False),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 9, out.stderr
    assert "uncommitted" in out.stdout
    worker = services.worker("invoice_status")
    assert worker.position() == 0 and view(services) == {}
    worker.catch_up()
    assert_view_matches_aggregates(services, ids)
    assert worker.dead_letter_count() == 0


def test_two_workers_one_projects_and_the_other_waits(services: Services) -> None:
    ids = issue_and_walk(services, 10)
    worker = services.worker("invoice_status")
    stop_a, stop_b = threading.Event(), threading.Event()
    from infrastructure.projections.worker import ProjectionWorker

    twin = ProjectionWorker(
        services.ledger,
        services.write_engine,
        services.engine,
        worker.projection,
        worker.leadership,
        services.board,
        poll_seconds=0.1,
    )
    a = threading.Thread(target=worker.run, args=(stop_a,), kwargs={"standby_retry": 0.1})
    a.start()
    _wait(lambda: worker.state.role == "active")
    b = threading.Thread(target=twin.run, args=(stop_b,), kwargs={"standby_retry": 0.1})
    b.start()
    _wait(lambda: twin.state.role == "standby")
    assert services.projection_status()[0]["active_runner"] is not None
    _wait(lambda: worker.position() == worker.head())
    stop_a.set()
    a.join(10)
    more = services.ledger.issue_invoice(T, a_draft(), by())
    _wait(lambda: twin.state.role == "active" and twin.position() >= more.position)
    stop_b.set()
    b.join(10)
    assert_view_matches_aggregates(services, [*ids, more.invoice_id])
    assert worker.dead_letter_count() == 0


def test_reads_can_wait_for_their_own_write(services: Services) -> None:
    issued = services.ledger.issue_invoice(T, a_draft(), by())
    with pytest.raises(ProjectionLagError):
        services.wait_for("invoice_status", issued.position, timeout=0.1)
    services.start_workers()
    started = time.monotonic()
    assert services.wait_for("invoice_status", issued.position, timeout=5) >= issued.position
    assert time.monotonic() - started < 5
    later = services.ledger.change_invoice(T, issued.invoice_id, SubmitRequest(channel="erp"), by())
    services.wait_for("invoice_status", later.position, timeout=5)
    assert services.reader.get(T, issued.invoice_id)["status"] == "submitted"  # type: ignore[index]


@pytest.mark.postgres
def test_a_real_worker_process_killed_with_sigkill_resumes_exactly_once(
    pg_services: Services,
) -> None:
    ids = issue_and_walk(pg_services, 400)
    env = {
        **os.environ,
        "FAPIAO_DATABASE_URL": pg_services.settings.url.render_as_string(hide_password=False),
        "FAPIAO_PROJECTION_BATCH_SIZE": "20",
    }
    worker = pg_services.worker("invoice_status")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: worker.position() > 0, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert 0 < worker.position() < worker.head()
    worker.catch_up()
    assert_view_matches_aggregates(pg_services, ids)
    assert worker.dead_letter_count() == 0


def _wait(condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_a_save_wakes_the_worker_without_waiting_for_the_poll_timer(services: Services) -> None:
    """NOTIFY (PostgreSQL) or the in-process signal (SQLite) wakes it; the 30 s re-poll is a
    fallback only."""
    worker = services.worker("invoice_status")
    worker.poll_seconds = 30
    services.start_workers()
    _wait(lambda: worker.state.role == "active")
    time.sleep(0.3)  # let it finish its first (empty) read and go to sleep
    for _ in range(3):
        issued = services.ledger.issue_invoice(T, a_draft(), by())
        started = time.monotonic()
        services.wait_for("invoice_status", issued.position, timeout=5)
        assert time.monotonic() - started < 2


def test_raw_projections_dead_letter_what_they_cannot_read(services: Services) -> None:
    import uuid

    services.ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=uuid.uuid4(),
                originator_version=1,
                topic="fapiao.invoice.issued.v1",
                state=b"not json",
            )
        ]
    )
    services.ledger.issue_invoice(T, a_draft(), by())
    history = services.worker("status_history")
    history.catch_up()
    assert history.dead_letter_count() == 1
    assert history.position() == history.head()


@pytest.mark.postgres
def test_the_runner_named_is_this_databases_not_another_ledgers_on_the_server(
    pg_settings: Any,
) -> None:
    # Advisory locks belong to a database: a ledger beside this one on the same server holds
    # its own lock of the same projection, and is not this ledger's runner.
    from infrastructure.projections.leadership import PostgresLeadership
    from tests.conftest import RUN_ID, _admin, _pg_url

    here = pg_settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    other = f"fapiao_t_{RUN_ID}_beside"
    _admin(f'CREATE DATABASE "{other}"')
    beside = PostgresLeadership(_pg_url(other), "invoice_status", "ledger_events")
    ours = PostgresLeadership(here, "invoice_status", "ledger_events")
    try:
        assert beside.try_acquire()
        assert PostgresLeadership.holder_pid(here, "invoice_status") is None
        assert ours.try_acquire()  # its own database's lock: free, whatever the other holds
        pid = ours.conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[union-attr, index]
        assert PostgresLeadership.holder_pid(here, "invoice_status") == pid
    finally:
        ours.release()
        beside.release()
        _admin(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
