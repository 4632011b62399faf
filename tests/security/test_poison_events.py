"""Poison events stored as old data could be (straight through the store, past every check the
edge now makes): each is dead-lettered by the projection that cannot apply it, every projection
catches up to the head, and other tenants see their new invoices at once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.store.tables import projection_dead_letters
from tests.builders import OTHER_TENANT, SELLER, a_draft, a_number, by, issue_json
from tests.e2e.test_api import Api


def _stored(services: Services, originator_id: uuid.UUID) -> list[StoredEvent]:
    return list(services.ledger.recorder.select_events(originator_id))


def _replant(
    services: Services, source: StoredEvent, change: Callable[[dict[str, Any]], None]
) -> None:
    """Store a copy of `source` as a fresh aggregate's first event, its state changed."""
    state = json.loads(source.state)
    fresh_number = a_number()  # its own invoice key: only the poison differs
    state = json.loads(json.dumps(state, ensure_ascii=False).replace(state["number"], fresh_number))
    change(state)
    services.ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=uuid.uuid4(),
                originator_version=source.originator_version,
                topic=source.topic,
                state=json.dumps(state).encode(),
            )
        ]
    )


def _issued_template(services: Services) -> StoredEvent:
    issued = services.ledger.issue_invoice(SELLER, a_draft(), by())
    return _stored(services, issued.invoice_id)[0]


def nul_in_seller_name(services: Services) -> None:
    source = _issued_template(services)

    def change(state: dict[str, Any]) -> None:
        text = json.dumps(state, ensure_ascii=False)
        state.clear()
        state.update(json.loads(text.replace("北京云帆科技有限公司", "北京\\u0000云帆")))

    _replant(services, source, change)


def huge_amount(services: Services) -> None:
    source = _issued_template(services)

    def change(state: dict[str, Any]) -> None:
        text = json.dumps(state, ensure_ascii=False)
        for field in ("1130.00", "1000.00"):
            text = text.replace(f'"{field}"', '"10000000000000000"')
        state.clear()
        state.update(json.loads(text))

    _replant(services, source, change)


def far_future(services: Services) -> None:
    source = _issued_template(services)

    def change(state: dict[str, Any]) -> None:
        assert isinstance(state["occurred_at"], dict), state["occurred_at"]
        state["occurred_at"] = {**state["occurred_at"], "_data_": "9999-12-31T23:59:59-12:00"}

    _replant(services, source, change)


def nul_in_window_note(services: Services) -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    services.policies.declare_maintenance(
        OTHER_TENANT, start, start + timedelta(hours=2), "platform upgrade", by()
    )
    from domain.monitoring.tenant_policy import policy_id

    events = _stored(services, policy_id(OTHER_TENANT))
    declared = next(e for e in events if "maintenance_window_declared" in e.topic)
    state = json.loads(declared.state)
    state["note"] = "up\u0000grade"
    state["window_id"] = {**state["window_id"], "_data_": uuid.uuid4().hex}
    services.ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=declared.originator_id,
                originator_version=events[-1].originator_version + 1,
                topic=declared.topic,
                state=json.dumps(state).encode(),
            )
        ]
    )


POISONS = {
    "nul_in_seller_name": nul_in_seller_name,
    "amount_10e16": huge_amount,
    "occurred_at_9999": far_future,
    "nul_in_maintenance_note": nul_in_window_note,
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poison_event_is_set_aside_and_every_projection_moves_on(
    services: Services, poison: str
) -> None:
    POISONS[poison](services)
    for worker in services.workers.values():
        worker.catch_up()
    fresh = services.ledger.issue_invoice(OTHER_TENANT, a_draft(seller=a_draft().buyer), by())
    for worker in services.workers.values():
        worker.catch_up()
    status = {r["projection"]: r for r in services.projection_status()}
    assert {name: r["lag"] for name, r in status.items()} == {name: 0 for name in status}
    assert services.reader.get(OTHER_TENANT, fresh.invoice_id) is not None
    with services.engine.connect() as conn:
        dead = conn.execute(select(projection_dead_letters)).all()
    expected = {
        "nul_in_seller_name": "invoice_status",
        "amount_10e16": "invoice_status",
        "occurred_at_9999": "invoice_status",
        "nul_in_maintenance_note": "ack_timers",
    }[poison]
    if services.settings.is_postgres or poison in ("occurred_at_9999",):
        # SQLite stores NUL and wide numbers; PostgreSQL refuses them; the overflow is Python's
        assert dead, f"{poison} was applied as if it were sound"
        assert expected in {d.projection for d in dead}, [(d.projection, d.error) for d in dead]
    for d in dead:  # the stored error names the failure, never the SQL or its parameters
        assert "INSERT" not in d.error and "[parameters" not in d.error and len(d.error) <= 500


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


@pytest.mark.parametrize("poison", list(POISONS))
def test_over_http_other_tenants_see_new_invoices_at_once_and_readyz_lists_it(
    api: Api, poison: str
) -> None:
    POISONS[poison](api.services)
    created = api.post(
        "/v1/invoices",
        issue_json(seller={"name": "南通", "taxpayer_code": OTHER_TENANT}),
        api.other,
    )
    assert created.status_code == 201, created.text
    got = api.get(
        f"/v1/invoices/{created.json()['invoice_id']}",
        api.other,
        consistent_after=created.json()["position"],
    )
    assert got.status_code == 200, got.text
    deadline = time.monotonic() + 20
    while True:
        ready = api.client.get("/readyz").json()
        if all(p["lag"] == 0 for p in ready["projections"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [p["projection"] for p in ready["projections"] if p["lag"]] == []
    assert ready["status"] == "ready", ready
    listed = {name: rows for name, rows in ready["dead_letters"].items()}
    if api.services.settings.is_postgres or poison == "occurred_at_9999":
        assert listed, ready
        assert all(row["error"] and row["topic"] for rows in listed.values() for row in rows)


def test_readyz_fails_while_a_projection_is_stuck_behind_the_head(services: Services) -> None:
    services.settings = services.settings.model_copy(update={"projection_stall_seconds": 0.3})
    with TestClient(create_app(services=services, run_workers=False)) as client:
        for worker in services.workers.values():
            worker.catch_up()
        assert client.get("/readyz").status_code == 200
        services.ledger.issue_invoice(SELLER, a_draft(), by())  # no runner will apply it
        first = client.get("/readyz")
        assert first.status_code == 200  # behind, but not yet for long
        time.sleep(0.4)
        stuck = client.get("/readyz")
        assert stuck.status_code == 503, stuck.text
        assert stuck.json()["status"] == "unavailable"
        assert "invoice_status" in stuck.json()["stalled"]
        for worker in services.workers.values():
            worker.catch_up()
        assert client.get("/readyz").status_code == 200


def test_failures_of_the_database_itself_are_retried_not_dead_lettered() -> None:
    """classify_failure: what the issue-11 retry builds on."""
    import psycopg
    from eventsourcing.persistence import OperationalError as LibraryOperationalError
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from infrastructure.projections.worker import (
        POISON,
        TRANSIENT,
        TrackingConflictError,
        classify_failure,
    )

    transient = [
        OperationalError("SELECT 1", {}, psycopg.errors.LockNotAvailable("lock timeout")),
        OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
        LibraryOperationalError("connection lost"),
        TrackingConflictError("already past"),
        TimeoutError(),
    ]
    poison = [
        DataError("INSERT", {}, psycopg.DataError("PostgreSQL text fields cannot contain NUL")),
        IntegrityError("INSERT", {}, psycopg.IntegrityError("duplicate key")),
        OverflowError("date value out of range"),
        KeyError("tenant_id"),
    ]
    assert [classify_failure(e) for e in transient] == [TRANSIENT] * len(transient)
    assert [classify_failure(e) for e in poison] == [POISON] * len(poison)
