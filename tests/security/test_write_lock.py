"""Nothing unbounded inside the write lock: the events insert is one statement (its payload
arrives before the server takes the lock), bounded by a lock and a statement timeout; the
write connections carry both timeouts; SIGTERM stops the server even with a client that never
finishes its request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from sqlalchemy import text

from application.service_errors import InvoiceAlreadyExistsError
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, by
from tests.fakes import SettableClock

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_a_held_table_lock_makes_writes_fail_in_bounded_time_not_hang(
    pg_settings: Settings,
) -> None:
    settings = pg_settings.model_copy(update={"lock_timeout_seconds": 1})
    services = build_services(settings, SettableClock())
    try:
        services.ledger.issue_invoice(SELLER, a_draft(), by())  # the write path works
        url = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as holder:
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
            with pytest.raises(OperationalError, match="lock timeout"):
                services.ledger.issue_invoice(SELLER, a_draft(), by())
            holder.execute("ROLLBACK")
        services.ledger.issue_invoice(SELLER, a_draft(), by())  # and works again
    finally:
        services.close()


@pytest.mark.postgres
def test_the_events_insert_is_one_statement_under_timeouts(pg_services: Services) -> None:
    """What the server saw last on the recorder's connection is the single call."""
    pg_services.ledger.issue_invoices(SELLER, [a_draft() for _ in range(50)], by())
    recorder = pg_services.ledger.recorder
    with recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname = 'fapiao_insert_events'"
        ).fetchone()
    assert functions is not None and list(functions.values())[0] == 1
    with pg_services.write_engine.connect() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "5s"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "1min"


def test_sigterm_stops_the_server_with_a_client_that_never_finishes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "FAPIAO_DATABASE_URL"}
    env.update(FAPIAO_DATA_DIR=str(tmp_path / "data"), FAPIAO_SHUTDOWN_GRACE_SECONDS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port), "--no-worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        # A request whose body never comes: the server must not wait for it on SIGTERM.
        client.sendall(
            b"POST /v1/invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"number":'
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)  # grace 2 s; hangs without the bound
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _traced_write_connection(services: Services, trace: Path) -> Any:
    """The recorder's only pooled connection, tracing the protocol messages it sends."""
    recorder: Any = services.ledger.recorder
    with recorder.datastore.get_connection() as conn:
        out = trace.open("w")
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        return conn, out


@pytest.mark.postgres
def test_a_write_is_one_round_trip_and_a_refused_one_leaves_its_connection_clean(
    pg_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """BEGIN, the timeouts, the insert and COMMIT go to the server as one pipeline with one
    Sync (the lock is never held waiting on this client, COMMIT included); a refusal (here a
    duplicate) is rolled back by the recorder, not left for the pool to find."""
    settings = pg_settings.model_copy(update={"pool_size": 1, "max_overflow": 0})
    services = build_services(settings, SettableClock())
    try:
        services.ledger.issue_invoice(SELLER, a_draft(), by())  # the connection is opened
        trace = tmp_path / "protocol.trace"
        conn, out = _traced_write_connection(services, trace)
        batch = [a_draft() for _ in range(3)]
        services.ledger.issue_invoices(SELLER, batch, by())
        conn.pgconn.untrace()
        out.close()
        sent = [line.split()[2] for line in trace.read_text().splitlines() if line[:1] == "F"]
        assert sent.count("Sync") == 1, sent
        assert sent.count("Query") <= 1, sent  # at most the pool's empty-query ping
        assert "Parse" in sent or "Bind" in sent

        caplog.set_level("WARNING", logger="psycopg.pool")
        before = services.ledger.recorder.max_notification_id()
        with pytest.raises(InvoiceAlreadyExistsError):
            services.ledger.issue_invoices(SELLER, [a_draft(), batch[0]], by())
        assert not [r for r in caplog.records if "rolling back" in r.getMessage()]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.autocommit is False
        assert services.ledger.recorder.max_notification_id() == before  # nothing half-written
        services.ledger.issue_invoices(SELLER, [a_draft()], by())  # and it writes again
        assert services.ledger.recorder.max_notification_id() > before
    finally:
        services.close()
