"""GET one invoice on the event loop (AsyncStatusReader, PostgreSQL): the same bytes as the
thread path for every kind of row, tenants kept apart, a 503 problem+json when the database is
down, a lazy pool of at most four connections closed with the app, and the thread path kept
wherever the loop read could answer differently (SQLite, a replica, tracing, a wait asked for)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.projections.invoice_status_async import (
    ACQUIRE_TIMEOUT,
    APPLICATION_NAME,
    MAX_CONNECTIONS,
    AsyncStatusReader,
)
from infrastructure.settings import Settings
from tests.builders import issue_json
from tests.e2e.test_api import Api

RED = {
    "confirmation_number": "11010826112001615708",
    "red_invoice_key": "26112000000135119999",
    "scope": "partial",
    "reason_code": "04",
    "amount": "113.00",
}


def _rows_of_every_kind(api: Api) -> tuple[list[str], int]:
    """Invoices that fill every column kind: none, times, money, the red keys, failures."""
    plain = api.issue()["invoice_id"]
    failed = api.issue()["invoice_id"]
    missing = api.issue()["invoice_id"]
    reversed_ = api.issue()["invoice_id"]
    steps: list[tuple[str, str, dict[str, Any]]] = [
        (failed, "submissions", {"channel": "erp"}),
        (failed, "submission-failures", {"reason_code": "timeout"}),
        (missing, "submissions", {}),
        (missing, "missing-reports", {"note": "北京的发票北京系统里没有"}),
        (reversed_, "submissions", {}),
        (reversed_, "acknowledgements", {"platform_ref": "ACK-1", "learned_via": "callback"}),
        (reversed_, "red-reversals", RED),
    ]
    position = 0
    for ref, path, body in steps:
        r = api.post(f"/v1/invoices/{ref}/{path}", body)
        assert r.status_code == 200, r.text
        position = r.json()["position"]
    return [plain, failed, missing, reversed_], position


def test_the_loop_read_answers_the_thread_paths_bytes(pg_services: Services) -> None:
    with TestClient(create_app(services=pg_services, run_workers=True)) as client:
        api = Api(client, pg_services)
        fast = pg_services.fast_reader
        assert fast is not None
        refs, position = _rows_of_every_kind(api)
        # the thread path's answers (consistent_after waits for the projection: a thread)
        before = fast.queries
        threaded = [api.get(f"/v1/invoices/{ref}", consistent_after=position) for ref in refs]
        assert fast.queries == before  # none of those went through the loop
        looped = [api.get(f"/v1/invoices/{ref}") for ref in refs]
        assert fast.queries == before + len(refs)
    for a, b in zip(threaded, looped, strict=True):
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.content == b.content
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
        assert a.headers["x-fapiao-read-from"] == b.headers["x-fapiao-read-from"] == "primary"
    shown = [r.json() for r in looped]
    assert shown[1]["last_failure_reason"] and shown[2]["missing_since"].endswith("+08:00")
    assert shown[3]["reversed_amount"] == "113.00" and shown[3]["acknowledged_at"]


def test_by_key_and_across_tenants_as_the_thread_path(pg_services: Services) -> None:
    with TestClient(create_app(services=pg_services)) as client:
        api = Api(client, pg_services)
        body = issue_json()
        made = api.post("/v1/invoices", body).json()
        pg_services.bring_up_to_date("invoice_status")
        mine = api.get(f"/v1/invoices/{body['number']}")
        assert mine.status_code == 200 and mine.json()["invoice_id"] == made["invoice_id"]
        for ref in (made["invoice_id"], body["number"], "not-an-invoice"):
            theirs = api.get(f"/v1/invoices/{ref}", headers=api.other)
            assert theirs.status_code == 404, theirs.text
            assert theirs.headers["content-type"] == "application/problem+json"
            assert ref in theirs.json()["detail"]


def _pool_connections(settings: Settings) -> int:
    engine = create_engine(settings.url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = :name AND datname = current_database()"
                    ),
                    {"name": APPLICATION_NAME},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_the_pool_opens_on_the_first_read_and_closes_with_the_app(
    pg_services: Services,
) -> None:
    with TestClient(create_app(services=pg_services)) as client:
        api = Api(client, pg_services)
        ref = api.issue()["invoice_id"]
        pg_services.bring_up_to_date("invoice_status")
        assert _pool_connections(pg_services.settings) == 0  # nothing opened before a read
        for _ in range(20):
            assert api.get(f"/v1/invoices/{ref}").status_code == 200
        assert 1 <= _pool_connections(pg_services.settings) <= MAX_CONNECTIONS
    assert pg_services.fast_reader is None
    assert _pool_connections(pg_services.settings) == 0


def test_a_database_that_is_down_is_a_503_problem(pg_services: Services) -> None:
    with TestClient(create_app(services=pg_services)) as client:
        api = Api(client, pg_services)
        ref = api.issue()["invoice_id"]
        opened = pg_services.fast_reader
        assert opened is not None
        # the same app, its loop reader now pointed at a port where nothing listens
        pg_services.fast_reader = AsyncStatusReader("postgresql://root@127.0.0.1:9/fapiao")
        asked = time.monotonic()
        r = api.get(f"/v1/invoices/{ref}")
        assert r.status_code == 503, r.text
        assert time.monotonic() - asked < ACQUIRE_TIMEOUT + 3  # bounded, not the 30 s default
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "1"
        assert r.json()["type"].endswith("database-unavailable")
        assert "9/fapiao" not in r.text and "root" not in r.text  # nothing of the address
        client.portal.call(opened.close)  # type: ignore[union-attr]


def test_the_thread_path_stays_where_the_loop_could_differ(
    pg_settings: Settings, sqlite_settings: Settings
) -> None:
    from infrastructure.store.database import create_engine_for

    engine = create_engine_for(pg_settings)
    try:
        assert AsyncStatusReader.serving(pg_settings, engine) is not None
        replica = pg_settings.model_copy(update={"read_database_url": pg_settings.url})
        assert AsyncStatusReader.serving(replica, engine) is None
        traced = pg_settings.model_copy(update={"otel_tracing": True})
        assert AsyncStatusReader.serving(traced, engine) is None
    finally:
        engine.dispose()
    lite = create_engine_for(sqlite_settings)
    try:
        assert AsyncStatusReader.serving(sqlite_settings, lite) is None
    finally:
        lite.dispose()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_sqlite_reads_in_a_thread(services: Services) -> None:
    with TestClient(create_app(services=services)) as client:
        assert services.fast_reader is None
        api = Api(client, services)
        ref = api.issue()["invoice_id"]
        services.bring_up_to_date("invoice_status")
        assert api.get(f"/v1/invoices/{ref}").status_code == 200
