"""A flaky webhook receiver (half its answers 500, one in ten hangs past the delivery timeout)
beside a healthy one, with the real deliverer running on the real clock: the flaky one gets
every alert (deduplicated on X-Fapiao-Delivery), the healthy one gets each promptly (never held
up by the hangs), and the gaps between attempts keep the configured backoff within 20%. A
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
from sqlalchemy import select

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


def alerts(api: Api, count: int) -> None:
    for _ in range(count):
        inv = api.issue()
        api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
        api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {})


def test_a_flaky_receiver_gets_every_alert_and_delays_no_one_else(
    real_time: Services, tmp_path: Path
) -> None:
    flaky, healthy = Receiver(flaky=True), Receiver(flaky=False)
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
        worst = max((abs(g - want) / want for g, want in gaps), default=0.0)
        print(
            f"\nflaky receiver: {ALERTS} alerts, {sent_to_flaky} requests "
            f"({sum(c == 500 for *_, c in flaky.requests)} answered 500, "
            f"{sum(c == 0 for *_, c in flaky.requests)} hung), distinct delivered "
            f"{len(flaky.delivered())}, attempts beyond the first {duplicates}; healthy: "
            f"{len(healthy.delivered())} delivered, its longest wait {max(lags):.2f} s; "
            f"{len(gaps)} retry gaps, worst {worst:.0%} off the configured backoff; "
            f"all in {elapsed:.1f} s"
        )
        assert len(flaky.delivered()) == ALERTS and len(healthy.delivered()) == ALERTS
        assert all(r.status == "delivered" for r in rows)
        assert max(lags) < 2.0  # a hang is 2 s and a backoff up to seconds: never waited on
        # never early; late by at most 20% plus a scheduling allowance for a busy CI machine
        assert gaps and all(0.8 * want <= gap <= 1.2 * want + SLACK for gap, want in gaps)
    finally:
        flaky.close()
        healthy.close()


def backoff_gaps(receiver: Receiver) -> list[tuple[float, float]]:
    """(measured, configured) pause between a failure and the next attempt of one delivery:
    from the 500 (or the deliverer's timeout on a hang) to the next request's arrival."""
    by_delivery: dict[str, list[tuple[float, float, int]]] = {}
    for delivery, start, answered, code in sorted(receiver.requests, key=lambda r: r[1]):
        by_delivery.setdefault(delivery, []).append((start, answered, code))
    gaps = []
    for attempts in by_delivery.values():
        for n, ((start, answered, code), (after, _, _)) in enumerate(
            zip(attempts, attempts[1:], strict=False), start=1
        ):
            failed_at = start + TIMEOUT if code == 0 else answered
            gaps.append((after - failed_at, min(BASE * 2 ** (n - 1), MAX)))
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
