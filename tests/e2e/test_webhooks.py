"""Alert webhooks delivered to a real HTTP receiver on loopback: signed, retried with backoff
while the receiver fails, dead after N failures, redeliverable once it recovers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.monitoring.callback_signatures import sign
from infrastructure.monitoring.platform_export_reader import write_export
from infrastructure.outbound import OutboundGuard
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.fakes import SettableClock
from tests.integration.test_reconciliation import a_ledger, export_for, reconcile


class Receiver:
    """An HTTP server that records what it is sent and fails the first `fail` requests."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    services.webhooks.max_attempts = 3
    services.webhooks.base_delay = timedelta(seconds=10)
    # the receiver is on loopback: allowed as an operator would allow an on-premises receiver
    services.webhooks.guard = OutboundGuard.from_setting("127.0.0.1/32")
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def project(services: Services) -> None:
    for worker in services.workers.values():
        worker.catch_up()


def subscribe(api: Api, receiver: Receiver) -> str:
    r = api.post("/v1/webhooks", {"url": receiver.url})
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def test_alerts_arrive_signed(
    api: Api, receiver: Receiver, clock: SettableClock, tmp_path: Path
) -> None:
    secret = subscribe(api, receiver)
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {"note": "not found"})
    other = api.issue()
    api.post(f"/v1/invoices/{other['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{other['invoice_id']}/rejections", {"reason_code": "E0203"})
    led = a_ledger(api.services)
    reconcile(
        api.services, write_export(tmp_path / "e.csv", export_for(led, "26112000009999999991"))
    )
    project(api.services)
    # ours: one missing, one rejected; the reconciled ledger adds a missing invoice reported by
    # a person, two the reconciliation found absent, and the run's mismatch alert
    assert api.services.webhooks.deliver_due() == 6
    events = [json.loads(r["body"]) for r in receiver.received]
    kinds = [e["event"] for e in events]
    assert kinds.count("invoice.missing") == 4 and kinds.count("invoice.rejected") == 1
    assert kinds[-1] == "reconciliation.mismatch"
    assert events[0]["data"]["invoice_key"] == inv["invoice_key"]
    assert events[-1]["data"]["counts"]["mismatched"] == 2
    by_reconciliation = [e for e in events if e["data"].get("detected_by") == "reconciliation"]
    assert len(by_reconciliation) == 2
    for r in receiver.received:
        h = {k.lower(): v for k, v in r["headers"].items()}
        assert h["x-fapiao-signature"] == sign(secret, h["x-fapiao-timestamp"], r["body"])
    project(api.services)
    assert api.services.webhooks.deliver_due() == 0  # nothing twice
    delivered = api.get("/v1/webhooks/deliveries", status="delivered").json()
    assert len(delivered) == 6 and all(d["attempts"] == 1 for d in delivered)


def test_a_failing_receiver_gets_retries_with_backoff_until_it_recovers(
    api: Api, receiver: Receiver, clock: SettableClock
) -> None:
    subscribe(api, receiver)
    receiver.fail = 2
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/rejections", {"reason_code": "E1"})
    project(api.services)
    hooks = api.services.webhooks
    assert hooks.deliver_due() == 0  # 1st attempt fails; next in 10 s
    clock.advance(timedelta(seconds=9))
    assert hooks.deliver_due() == 0 and receiver.fail == 1  # not due yet
    clock.advance(timedelta(seconds=2))
    assert hooks.deliver_due() == 0  # 2nd attempt fails; next in 20 s
    clock.advance(timedelta(seconds=21))
    assert hooks.deliver_due() == 1
    (d,) = api.get("/v1/webhooks/deliveries").json()
    assert (d["status"], d["attempts"]) == ("delivered", 3)


def test_after_n_failures_it_is_dead_and_can_be_redelivered(
    api: Api, receiver: Receiver, clock: SettableClock
) -> None:
    subscribe(api, receiver)
    receiver.fail = 100
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {})
    project(api.services)
    for _ in range(3):
        api.services.webhooks.deliver_due()
        clock.advance(timedelta(minutes=5))
    (dead,) = api.get("/v1/webhooks/deliveries", status="dead").json()
    assert dead["attempts"] == 3 and dead["last_error"] == "HTTP 503"
    assert api.services.webhooks.deliver_due() == 0
    receiver.fail = 0
    r = api.post(f"/v1/webhooks/deliveries/{dead['delivery_id']}/redeliver", {})
    assert r.status_code == 202
    assert api.services.webhooks.deliver_due() == 1
    assert receiver.received and api.get("/v1/webhooks/deliveries", status="dead").json() == []


def test_subscriptions_are_checked_and_tenant_scoped(api: Api, receiver: Receiver) -> None:
    assert api.post("/v1/webhooks", {"url": "ftp://x"}).status_code == 422
    assert api.post("/v1/webhooks", {"url": receiver.url, "events": ["x"]}).status_code == 422
    assert api.post("/v1/webhooks", {"url": receiver.url}, api.auditor).status_code == 403
    sid = api.post("/v1/webhooks", {"url": receiver.url}).json()["subscription_id"]
    assert [s["subscription_id"] for s in api.get("/v1/webhooks").json()] == [sid]
    assert api.get("/v1/webhooks", api.other).json() == []
    assert api.client.delete(f"/v1/webhooks/{sid}", headers=api.other).status_code == 422
    assert api.client.delete(f"/v1/webhooks/{sid}", headers=api.clerk).status_code == 204
    assert api.get("/v1/webhooks").json() == []
    assert SELLER
