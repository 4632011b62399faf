"""A flaky webhook receiver (half its answers 500, one in ten hangs past the delivery timeout)
beside a healthy one, with the real deliverer running on the real clock: the flaky one gets
every alert (deduplicated on X-Fapiao-Delivery), the healthy one gets each promptly (never held
up by the hangs), and the gaps between attempts keep the configured backoff within 20% (plus
what the machine measurably kept the process from running). A
deliverer that dies with a claim lets it lapse, and another resends it within 30 s."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.http.app import create_app
from infrastructure.bootstrap import Services, build_services
from infrastructure.clock import SystemClock
from infrastructure.monitoring.webhooks import CLAIM, WebhookService
from infrastructure.outbound import OutboundGuard
from infrastructure.settings import Settings
from infrastructure.store.tables import webhook_deliveries
from tests.e2e.test_api import Api

TIMEOUT = 0.5  # per delivery
BASE, MAX = 0.4, 1.6  # backoff: 0.4, 0.8, 1.6, 1.6 ... s
ALERTS = 16
SLACK = 0.15  # seconds: threads and the database on a shared machine


class Receiver:
    """Records (delivery id, start, answered) per request; `flaky` fails half and hangs 10%."""

    def __init__(self, flaky: bool, seed: int = 5) -> None:
        self.requests: list[tuple[str, float, float, int]] = []
        rng = random.Random(seed)  # noqa: S311 - test data
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                start = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                delivery = self.headers["X-Fapiao-Delivery"]
                if body["event"] != "invoice.missing":  # checkpoint.signed goes to everyone
                    self.send_response(204)
                    self.end_headers()
                    return
                with lock:
                    roll = rng.random() if flaky else 1.0
                if roll < 0.1:
                    time.sleep(TIMEOUT * 4)  # hangs past the deliverer's timeout
                    code = 0
                else:
                    code = 500 if roll < 0.6 else 204
                    self.send_response(code)
                    self.end_headers()
                with lock:
                    receiver.requests.append((delivery, start, time.monotonic(), code))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> set[str]:
        return {d for d, _, _, code in self.requests if code == 204}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def real_time(settings: Settings) -> Iterator[Services]:
    tuned = settings.model_copy(
        update={
            "webhook_backoff_seconds": BASE,
            "webhook_backoff_max_seconds": MAX,
            "webhook_max_attempts": 30,
            "webhook_timeout_seconds": TIMEOUT,
        }
    )
    services = build_services(tuned, SystemClock())
    services.webhooks.guard = OutboundGuard.from_setting("127.0.0.1/32")
    yield services
    services.close()


class Stalls:
    """How long the machine kept the deliverer from running, measured beside it: one thread
    sleeps 10 ms over and over and records how late it wakes (a busy CPU, or a thread holding
    the GIL, delays the deliverer the same way); another makes an empty write transaction on
    the deliverer's database every 20 ms and records how long it took (each retry's claim is
    such a write: on SQLite it waits for the single writer, on PostgreSQL for its commit)."""

    TICK = 0.01

    def __init__(self, engine: Engine) -> None:
        self.late: list[tuple[float, float]] = []  # (woke at, late by)
        self.writes: list[tuple[float, float]] = []  # (began at, took)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sleep, daemon=True),
            threading.Thread(target=self._write, args=(engine,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _sleep(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(self.TICK)
            after = time.monotonic()
            self.late.append((after, max(0.0, after - before - self.TICK)))

    def _write(self, engine: Engine) -> None:
        probe = "SELECT txid_current()" if engine.dialect.name == "postgresql" else "SELECT 1"
        while not self._stop.wait(0.02):
            before = time.monotonic()
            with engine.begin() as conn:  # SQLite's write engine begins IMMEDIATE
                conn.exec_driver_sql(probe)  # on PostgreSQL an id, so the commit is flushed
            self.writes.append((before, time.monotonic() - before))

    def during(self, start: float, end: float) -> float:
        """The wake-ups' lateness summed between `start` and `end`, plus the slowest write
        begun then."""
        late = sum(by for woke, by in self.late if start < woke <= end + self.TICK)
        return late + max((took for began, took in self.writes if start <= began <= end), default=0)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def alerts(api: Api, count: int) -> None:
    for _ in range(count):
        inv = api.issue()
        api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
        api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {})


def test_a_flaky_receiver_gets_every_alert_and_delays_no_one_else(
    real_time: Services, tmp_path: Path
) -> None:
    flaky, healthy = Receiver(flaky=True), Receiver(flaky=False)
    stalls = Stalls(real_time.write_engine)
    try:
        with TestClient(create_app(services=real_time, run_workers=True)) as client:
            api = Api(client, real_time)
            for receiver in (flaky, healthy):
                r = api.post("/v1/webhooks", {"url": receiver.url, "events": ["invoice.missing"]})
                assert r.status_code == 201, r.text
            started = time.monotonic()
            alerts(api, ALERTS)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(flaky.delivered()) == ALERTS and len(healthy.delivered()) == ALERTS:
                    break
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            stalls.close()
            while time.monotonic() < deadline:  # the last answers being recorded
                with real_time.engine.connect() as conn:
                    rows = conn.execute(
                        select(webhook_deliveries).where(
                            webhook_deliveries.c.event_type == "invoice.missing"
                        )
                    ).all()
                if all(r.status == "delivered" for r in rows):
                    break
                time.sleep(0.05)
        created = {str(r.delivery_id): r.created_at for r in rows}
        lags = [
            start - (created[d].timestamp() - time.time() + time.monotonic())
            for d, start, _, code in healthy.requests
            if code == 204
        ]
        sent_to_flaky = len(flaky.requests)
        duplicates = sent_to_flaky - len({d for d, *_ in flaky.requests})
        gaps = backoff_gaps(flaky)
        worst = max((abs(g - want) / want for g, _, want in gaps), default=0.0)
        stalled = [stalls.during(failed_at, failed_at + gap) for gap, failed_at, _ in gaps]
        print(
            f"\nflaky receiver: {ALERTS} alerts, {sent_to_flaky} requests "
            f"({sum(c == 500 for *_, c in flaky.requests)} answered 500, "
            f"{sum(c == 0 for *_, c in flaky.requests)} hung), distinct delivered "
            f"{len(flaky.delivered())}, attempts beyond the first {duplicates}; healthy: "
            f"{len(healthy.delivered())} delivered, its longest wait {max(lags):.2f} s; "
            f"{len(gaps)} retry gaps, worst {worst:.0%} off the configured backoff "
            f"(the machine stalled it {max(stalled, default=0.0):.2f} s at most in one); "
            f"all in {elapsed:.1f} s"
        )
        assert len(flaky.delivered()) == ALERTS and len(healthy.delivered()) == ALERTS
        assert all(r.status == "delivered" for r in rows)
        assert max(lags) < 2.0  # a hang is 2 s and a backoff up to seconds: never waited on
        # never early; late by at most 20%, plus a scheduling allowance, plus what the machine
        # kept the deliverer from doing meanwhile (measured beside it, not guessed)
        assert gaps
        for (gap, _, want), stall in zip(gaps, stalled, strict=True):
            assert 0.8 * want <= gap <= 1.2 * want + SLACK + stall, (gap, want, stall)
    finally:
        stalls.close()
        flaky.close()
        healthy.close()


def backoff_gaps(receiver: Receiver) -> list[tuple[float, float, float]]:
    """(measured, failed at, configured) pause between a failure and the next attempt of one
    delivery: from the 500 (or the deliverer's timeout on a hang) to the next request's
    arrival."""
    by_delivery: dict[str, list[tuple[float, float, int]]] = {}
    for delivery, start, answered, code in sorted(receiver.requests, key=lambda r: r[1]):
        by_delivery.setdefault(delivery, []).append((start, answered, code))
    gaps = []
    for attempts in by_delivery.values():
        for n, ((start, answered, code), (after, _, _)) in enumerate(
            zip(attempts, attempts[1:], strict=False), start=1
        ):
            failed_at = start + TIMEOUT if code == 0 else answered
            gaps.append((after - failed_at, failed_at, min(BASE * 2 ** (n - 1), MAX)))
    return gaps


def test_a_claim_left_by_a_dead_deliverer_is_resent_within_30_s(real_time: Services) -> None:
    """Deliverer A claims an alert and hangs on it without a heartbeat (as a killed process
    would); deliverer B, running, resends it once A's claim lapses: within CLAIM (15 s, here
    shortened to 1 s) plus B's poll, well inside 30 s."""
    assert timedelta(seconds=30) > CLAIM + timedelta(
        seconds=real_time.settings.webhook_poll_seconds
    )
    receiver = Receiver(flaky=False)
    hang_first = threading.Event()
    original = receiver.server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

    def first_hangs(handler: Any) -> None:
        if not hang_first.is_set():
            hang_first.set()
            time.sleep(4)  # A is gone as far as anyone can tell
            return
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = first_hangs  # type: ignore[attr-defined]
    try:
        claim = timedelta(seconds=1)
        real_time.webhooks.claim = claim
        with TestClient(create_app(services=real_time, run_workers=False)) as client:
            api = Api(client, real_time)
            api.post("/v1/webhooks", {"url": receiver.url, "events": ["invoice.missing"]})
            alerts(api, 1)
            for worker in real_time.workers.values():
                worker.catch_up()
            dead = WebhookService(
                real_time.engine,
                real_time.write_engine,
                SystemClock(),
                timeout=10,
                guard=real_time.webhooks.guard,
                claim=claim,
            )
            dead.dispatch()  # claims and sends; never heartbeats
            while not hang_first.is_set():
                time.sleep(0.01)
            lost_at = time.monotonic()
            real_time.start_workers()  # B: the deliverer loop with its heartbeat
            while not receiver.delivered() and time.monotonic() - lost_at < 30:
                time.sleep(0.05)
            resent = time.monotonic() - lost_at
            print(f"\ndead deliverer: its claimed alert resent after {resent:.2f} s")
            assert len(receiver.delivered()) == 1 and resent < claim.total_seconds() + 2
            dead.close()
    finally:
        receiver.close()


def test_a_new_alert_is_sent_at_once_not_at_the_next_poll(settings: Settings) -> None:
    """The alerts projection wakes the deliverer once its batch commits: with a 30 s poll, a
    new alert still reaches its receiver within seconds."""
    slow_poll = settings.model_copy(update={"webhook_poll_seconds": 30.0})
    services = build_services(slow_poll, SystemClock())
    services.webhooks.guard = OutboundGuard.from_setting("127.0.0.1/32")
    receiver = Receiver(flaky=False)
    try:
        with TestClient(create_app(services=services, run_workers=True)) as client:
            api = Api(client, services)
            r = api.post("/v1/webhooks", {"url": receiver.url, "events": ["invoice.missing"]})
            assert r.status_code == 201, r.text
            time.sleep(0.5)  # the deliverer's first round is done: it now sleeps for the poll
            started = time.monotonic()
            alerts(api, 1)
            while not receiver.delivered() and time.monotonic() - started < 20:
                time.sleep(0.05)
            took = time.monotonic() - started
        assert len(receiver.delivered()) == 1, receiver.requests
        assert took < 10, took  # the poll alone would have waited up to 30 s
    finally:
        receiver.close()
        services.close()
