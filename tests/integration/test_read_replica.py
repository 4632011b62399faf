"""A real streaming replica on this machine (pg_basebackup into a private cluster on another
port): list and queue reads go to it with its replay lag in X-Fapiao-Replica-Lag-Ms, and a read
with consistent_after falls back to the primary while the replica has not replayed that
position, so it never answers stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from tests.builders import issue_json
from tests.e2e.test_api import Api
from tests.pg_cluster import PrivateCluster, free_port

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PrivateCluster, PrivateCluster]]:
    primary = PrivateCluster.create()
    replica = None
    try:
        primary.start()
        primary.execute('CREATE DATABASE "ledger"')
        migrate.upgrade(Settings(database_url=primary.url("ledger")))
        replica = primary.replica()
        primary.wait_until_streaming()
        yield primary, replica
    finally:
        if replica is not None:
            replica.remove()
        primary.remove()


@pytest.fixture
def api(clusters: tuple[PrivateCluster, PrivateCluster], tmp_path: Path) -> Iterator[Api]:
    primary, replica = clusters
    settings = Settings(
        database_url=primary.url("ledger"),
        read_database_url=replica.url("ledger"),
        data_dir=tmp_path,
        environment="test",
        projection_poll_seconds=0.2,
        consistent_read_timeout=10,
    )
    services = build_services(settings)
    try:
        with TestClient(create_app(services=services, run_workers=True)) as client:
            yield Api(client, services)
    finally:
        services.close()


def replica_has(api: Api, position: int, timeout: float = 20) -> None:
    """Wait until the replica has replayed the invoice view up to `position`."""
    assert api.services.replica is not None
    worker = api.services.worker("invoice_status")
    deadline = time.monotonic() + timeout
    while api.services.replica.position(worker.tracking, worker.app_name) < position:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.1)


def test_reads_go_to_the_replica_and_report_its_lag(api: Api) -> None:
    made = api.issue()
    replica_has(api, made["position"])
    r = api.get("/v1/invoices", consistent_after=made["position"])
    assert r.status_code == 200
    assert r.headers["x-fapiao-read-from"] == "replica"
    assert int(r.headers["x-fapiao-replica-lag-ms"]) >= 0
    assert made["invoice_id"] in {i["invoice_id"] for i in r.json()["items"]}
    for path in ("/v1/invoice-counts", "/v1/queues/missing", "/v1/queues/overdue"):
        q = api.get(path)
        assert q.status_code == 200 and q.headers["x-fapiao-read-from"] == "replica", path


def test_reads_after_a_write_never_go_stale(api: Api) -> None:
    sources = []
    for _ in range(15):
        made = api.issue()
        r = api.get(f"/v1/invoices/{made['invoice_id']}", consistent_after=made["position"])
        assert r.status_code == 200, r.text
        sources.append(r.headers["x-fapiao-read-from"])
        listed = api.get("/v1/invoices", consistent_after=made["position"], limit=500)
        assert made["invoice_id"] in {i["invoice_id"] for i in listed.json()["items"]}
    assert set(sources) <= {"replica", "primary"}


def test_a_replica_behind_the_position_asked_for_falls_back_to_the_primary(
    api: Api, clusters: tuple[PrivateCluster, PrivateCluster]
) -> None:
    _, replica = clusters
    first = api.issue()
    replica_has(api, first["position"])
    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        made = api.post("/v1/invoices", issue_json()).json()
        api.services.wait_for("invoice_status", made["position"], 10)
        time.sleep(0.3)  # the lag is the age of the last replayed transaction
        r = api.get(f"/v1/invoices/{made['invoice_id']}", consistent_after=made["position"])
        assert r.status_code == 200 and r.headers["x-fapiao-read-from"] == "primary"
        assert int(r.headers["x-fapiao-replica-lag-ms"]) > 0  # reported even when not used
        # Without consistent_after the replica answers, as of what it has replayed.
        stale = api.get("/v1/invoices", limit=500)
        assert stale.headers["x-fapiao-read-from"] == "replica"
        assert made["invoice_id"] not in {i["invoice_id"] for i in stale.json()["items"]}
        assert int(stale.headers["x-fapiao-replica-lag-ms"]) > 0
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    replica_has(api, made["position"])
    r = api.get(f"/v1/invoices/{made['invoice_id']}", consistent_after=made["position"])
    assert r.headers["x-fapiao-read-from"] == "replica"


def test_an_unreachable_replica_means_reads_from_the_primary(
    clusters: tuple[PrivateCluster, PrivateCluster], tmp_path: Path
) -> None:
    primary, _ = clusters
    settings = Settings(
        database_url=primary.url("ledger"),
        read_database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/ledger",
        data_dir=tmp_path,
        environment="test",
    )
    services = build_services(settings)
    try:
        with TestClient(create_app(services=services)) as client:
            api = Api(client, services)
            r = api.get("/v1/invoice-counts")
            assert r.status_code == 200 and r.headers["x-fapiao-read-from"] == "primary"
            assert "x-fapiao-replica-lag-ms" not in r.headers
    finally:
        services.close()
