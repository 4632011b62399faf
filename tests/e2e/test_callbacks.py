"""Signed platform callbacks: accepted when signed, fresh and new; else 401, nothing changed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from domain.invoices.invoice import Invoice
from infrastructure.bootstrap import Services
from infrastructure.monitoring.callback_signatures import sign
from infrastructure.store.tables import callback_secrets
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.fakes import SettableClock


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def send(
    api: Api,
    secret: str,
    body: dict[str, object],
    clock: SettableClock,
    age: timedelta = timedelta(0),
    tenant: str = SELLER,
    raw: bytes | None = None,
    signature: str | None = None,
    timestamp: str | None = None,
) -> object:
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    ts = timestamp or str(int((clock.now() - age).timestamp()))
    sig = signature or sign(secret, ts, data)
    return api.client.post(
        "/v1/platform/callbacks",
        content=data,
        headers={
            "Content-Type": "application/json",
            "X-Fapiao-Tenant": tenant,
            "X-Fapiao-Timestamp": ts,
            "X-Fapiao-Signature": sig,
        },
    )


def submitted(api: Api) -> dict[str, object]:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    return inv


def test_a_signed_acknowledgement_is_recorded_as_from_the_callback(
    api: Api, clock: SettableClock
) -> None:
    admin = api.key(SELLER, "admin")
    secret = api.client.post("/v1/platform/callback-secret", headers=admin).json()["secret"]
    inv = submitted(api)
    body = {
        "kind": "acknowledged",
        "invoice_key": inv["invoice_key"],
        "platform_ref": "SW01",
        "at": clock.now().isoformat(),
    }
    r = send(api, secret, body, clock)
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    assert r.json()["status"] == "acknowledged"  # type: ignore[attr-defined]
    last = list(api.services.ledger.events.get(UUID(str(inv["invoice_id"]))))[-1]
    assert isinstance(last, Invoice.Acknowledged)
    assert (last.learned_via, last.source, last.actor) == (
        "callback",
        "callback",
        f"callback:{SELLER}",
    )
    clock.advance(timedelta(seconds=30))  # the provider resends the same notice
    again = send(api, secret, body, clock)
    assert again.status_code == 200 and again.json()["replayed"] is True  # type: ignore[attr-defined]


def test_bad_stale_and_replayed_callbacks_get_401_and_change_nothing(
    api: Api, clock: SettableClock
) -> None:
    secret = api.services.callbacks.rotate_secret(SELLER)
    inv = submitted(api)
    body = {
        "kind": "rejected",
        "invoice_key": inv["invoice_key"],
        "reason_code": "E0203",
        "at": clock.now().isoformat(),
    }
    before = api.events_stored()
    cases = [
        send(api, "wrong-secret", body, clock),
        send(api, secret, body, clock, age=timedelta(minutes=6)),
        send(api, secret, body, clock, age=-timedelta(minutes=6)),
        send(api, secret, body, clock, tenant="91320621MA1MRHG205"),
        send(api, secret, body, clock, timestamp="yesterday"),
        send(api, secret, body, clock, signature="sha256=" + "0" * 64),
    ]
    for r in cases:
        assert r.status_code == 401, r.text  # type: ignore[attr-defined]
        assert r.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    assert api.events_stored() == before
    ts = str(int(clock.now().timestamp()))
    data = json.dumps(body).encode()
    first = send(api, secret, body, clock, raw=data, timestamp=ts)
    assert first.status_code == 200  # type: ignore[attr-defined]
    after_first = api.events_stored()
    replay = send(api, secret, body, clock, raw=data, timestamp=ts)
    assert replay.status_code == 401  # type: ignore[attr-defined]
    assert "already used" in replay.json()["detail"]  # type: ignore[attr-defined]
    assert api.events_stored() == after_first


def test_a_signed_but_malformed_callback_is_422(api: Api, clock: SettableClock) -> None:
    secret = api.services.callbacks.rotate_secret(SELLER)
    r = send(api, secret, {"kind": "maybe", "invoice_key": "x"}, clock)
    assert r.status_code == 422  # type: ignore[attr-defined]
    fields = {e["field"] for e in r.json()["errors"]}  # type: ignore[attr-defined]
    assert {"kind", "at"} <= fields
    assert api.client.post("/v1/platform/callback-secret", headers=api.clerk).status_code == 403


def test_concurrent_first_rotations_without_a_key_never_fail(
    api: Api, clock: SettableClock
) -> None:
    """A tenant with no secret yet, ten rotations at once (no Idempotency-Key): each answers
    201 (as if one followed the other), and the secret kept is one of those shown."""
    admin = api.key(SELLER, "admin")
    answers: list[object] = []
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        answers.append(api.client.post("/v1/platform/callback-secret", headers=admin))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]  # type: ignore[attr-defined]
    shown = {a.json()["secret"] for a in answers}  # type: ignore[attr-defined]
    assert len(shown) == 10
    with api.services.engine.connect() as conn:
        kept = conn.execute(select(callback_secrets.c.secret, callback_secrets.c.tenant_id)).all()
    assert len(kept) == 1 and kept[0].tenant_id == SELLER and kept[0].secret in shown
    inv = submitted(api)
    body = {"kind": "acknowledged", "invoice_key": inv["invoice_key"], "platform_ref": "SW9",
            "at": clock.now().isoformat()}  # fmt: skip
    assert send(api, kept[0].secret, body, clock).status_code == 200  # type: ignore[attr-defined]
