"""The outbound guard over HTTP (webhook registration and delivery) and on its own: only http(s)
with a host, internal ranges refused after resolution and on every redirect, an allow-list for
on-premises receivers, and errors that do not say what answered. No traffic leaves loopback:
refused addresses are refused before any connection is made."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.outbound import OutboundFailedError, OutboundGuard, OutboundRefusedError
from infrastructure.store.tables import webhook_subscriptions
from tests.e2e.test_api import Api
from tests.fakes import SettableClock

REFUSED_URLS = [
    "http://127.0.0.1:5432/x",
    "http://localhost:8000/hook",  # a name: refused after resolution
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::127.0.0.1]/x",  # IPv4-compatible (reserved)
    "http://[64:ff9b::7f00:1]/x",  # NAT64 form of 127.0.0.1
    "http://[2002:7f00:1::]/x",  # 6to4 form of 127.0.0.1
    "http://[64:ff9b::a01:203]/x",  # NAT64 form of 10.1.2.3
    "http://0.0.0.0/x",
    "http://10.1.2.3/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/x",
    "http://[fd00::1]/x",
    "http://[fe80::1]/x",
    "http://224.0.0.1/x",
    "http://2130706433/x",  # 127.0.0.1 as one number
    "http:///x",
    "http://user:pass@example.com/x",
    "http://example.com/x\r\nX-Injected: 1",
    "http://example.com/a b",
    "http://example.com:0/x",
    "http://example.com:99999/x",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "gopher://example.com/x",
    "http://example.com/" + "a" * 3000,
]


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def _subscriptions(services: Services) -> int:
    with services.engine.connect() as conn:
        return len(conn.execute(select(webhook_subscriptions)).all())


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_registration_refuses_internal_and_malformed_urls(api: Api, url: str) -> None:
    r = api.post("/v1/webhooks", {"url": url})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "url" in r.text
    assert _subscriptions(api.services) == 0


class _Server:
    """A loopback HTTP server answering every POST with `status` (and `location`)."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                outer.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_allowed_receiver_is_reached_and_a_redirect_inside_is_refused() -> None:
    target = _Server()
    redirector = _Server(307, location=f"http://127.0.0.2:{target.port}/inside")
    try:
        allow_one = OutboundGuard.from_setting("127.0.0.1/32")
        assert allow_one.post(target.url, b"{}", {}, 2.0).status == 204
        with pytest.raises(OutboundRefusedError, match="internal or reserved"):
            allow_one.post(redirector.url, b"{}", {}, 2.0)
        assert target.hits == 1 and redirector.hits == 1
        with pytest.raises(OutboundRefusedError):  # nothing allowed: loopback is refused
            OutboundGuard().post(target.url, b"{}", {}, 2.0)
        assert target.hits == 1
    finally:
        target.close()
        redirector.close()


def test_redirect_loops_are_bounded() -> None:
    looping = _Server(308, location="/hook")
    try:
        with pytest.raises(OutboundFailedError, match="redirects"):
            OutboundGuard.from_setting("127.0.0.1").post(looping.url, b"{}", {}, 2.0)
        assert looping.hits == 4
    finally:
        looping.close()


def test_a_name_that_resolves_to_a_public_and_an_internal_address_is_refused() -> None:
    guard = OutboundGuard(resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with pytest.raises(OutboundRefusedError):
        guard.resolve("rebinding.example", 443)
    public = OutboundGuard(resolver=lambda host, port: ["93.184.216.34"])
    assert public.resolve("example.com", 443) == "93.184.216.34"
    by_name = OutboundGuard.from_setting("erp.corp.local", resolver=lambda h, p: ["10.0.0.5"])
    assert by_name.resolve("erp.corp.local", 443) == "10.0.0.5"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_errors_do_not_tell_open_from_closed_ports() -> None:
    """A closed port, a port that accepts and never answers, and a port that answers in
    something other than HTTP give the same error."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    guard = OutboundGuard.from_setting("127.0.0.1/32")
    errors = set()
    for port in (_closed_port(), silent.getsockname()[1]):
        with pytest.raises(OutboundFailedError) as caught:
            guard.post(f"http://127.0.0.1:{port}/x", b"{}", {}, 0.5)
        errors.add(str(caught.value))
    silent.close()
    assert errors == {"could not deliver: no HTTP answer"}


def test_delivery_checks_the_address_on_every_attempt_and_says_only_that_it_was_refused(
    api: Api, clock: SettableClock
) -> None:
    receiver = _Server()
    try:
        api.services.webhooks.guard = OutboundGuard.from_setting("127.0.0.1/32")
        assert api.post("/v1/webhooks", {"url": receiver.url}).status_code == 201
        inv = api.issue()
        api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
        api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {})
        for worker in api.services.workers.values():
            worker.catch_up()
        api.services.webhooks.guard = OutboundGuard()  # the operator withdrew the allowance
        assert api.services.webhooks.deliver_due() == 0
        assert receiver.hits == 0
        (pending,) = api.get("/v1/webhooks/deliveries").json()
        assert pending["last_error"].startswith("url leads to an internal or reserved address")
        assert str(receiver.port) not in pending["last_error"]
    finally:
        receiver.close()
