"""The database stopped under the API (a private PostgreSQL cluster, loopback only): writes are
answered 503 problem+json with Retry-After, never 500; a retry with the same Idempotency-Key
after the restart records the command once; the API serves again within 2 s of the restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from tests.builders import SELLER, issue_json
from tests.fakes import SettableClock
from tests.pg_cluster import PrivateCluster


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    own = PrivateCluster.create()
    try:
        own.start()
        own.execute('CREATE DATABASE "outage"')
        yield own
    finally:
        own.remove()


@pytest.mark.postgres
def test_an_outage_is_503_with_retry_after_and_the_api_recovers_within_2_s(
    cluster: PrivateCluster, tmp_path: object
) -> None:
    settings = Settings(
        database_url=cluster.url("outage"), pool_size=2, max_overflow=2, environment="test"
    )
    migrate.upgrade(settings)
    services = build_services(settings, SettableClock())
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        clerk = {"Authorization": f"Bearer {services.keys.create_key(SELLER, 'clerk')[1]}"}
        with TestClient(create_app(services=services)) as client:
            assert client.post("/v1/invoices", json=issue_json(), headers=clerk).status_code == 201
            cluster.stop()
            body = issue_json()
            retried = {**clerk, "Idempotency-Key": "outage-1"}
            during = [client.post("/v1/invoices", json=body, headers=retried) for _ in range(3)]
            statuses = [r.status_code for r in during]
            assert statuses == [503, 503, 503], [r.text for r in during]
            assert all(r.headers["content-type"] == "application/problem+json" for r in during)
            assert all(int(r.headers["retry-after"]) >= 1 for r in during)
            cluster.start()
            back = time.monotonic()
            while True:
                r = client.post("/v1/invoices", json=body, headers=retried)
                if r.status_code == 201 or time.monotonic() - back > 10:
                    break
                assert r.status_code == 503, r.text
                time.sleep(0.1)
            recovered = time.monotonic() - back
            again = client.post("/v1/invoices", json=body, headers=retried)
            events = len(list(services.ledger.events.get(r.json()["invoice_id"])))  # type: ignore[attr-defined]
            print(
                f"\noutage: 5xx during {statuses}, recovered in {recovered:.2f} s, "
                f"retry replayed={again.json()['replayed']}, events of the retried invoice {events}"
            )
            assert r.status_code == 201 and recovered <= 2.0
            assert (
                again.json()["replayed"] is True
                and again.json()["position"] == r.json()["position"]
            )
    finally:
        services.close()


def test_readyz_proves_a_write_commits_and_fails_when_sqlite_has_no_disk_room(
    sqlite_settings: Settings,
) -> None:
    services = build_services(sqlite_settings, SettableClock())
    try:
        with TestClient(create_app(services=services)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["writes"] == "ok"
            # the disk's free space below the threshold (as a full disk would be)
            services.settings = services.settings.model_copy(update={"min_free_disk_mb": 2**40})
            full = client.get("/readyz")
            assert (
                full.status_code == 503 and "free on the database's disk" in full.json()["writes"]
            )
            assert full.headers["retry-after"]
            services.settings = services.settings.model_copy(update={"min_free_disk_mb": 64})
            with services.write_engine.begin() as conn:  # the probe row gone: a write fails
                conn.exec_driver_sql("DROP TABLE readiness_probe")
            refused = client.get("/readyz")
            assert refused.status_code == 503, refused.text
    finally:
        services.close()


@pytest.mark.postgres
def test_metrics_answer_promptly_while_the_database_is_down(cluster: PrivateCluster) -> None:
    settings = Settings(
        database_url=cluster.url("outage"), pool_size=2, max_overflow=2, environment="test"
    )
    migrate.upgrade(settings)
    services = build_services(settings, SettableClock())
    try:
        with TestClient(create_app(services=services)) as client:
            up = client.get("/metrics")
            assert up.status_code == 200 and "fapiao_projection_head{" in up.text
            assert 'fapiao_metrics_collect_errors_total{part="projections"} 0.0' in up.text
            cluster.stop()
            took = []
            for _ in range(3):
                started = time.monotonic()
                down = client.get("/metrics")
                took.append(time.monotonic() - started)
                assert down.status_code == 200, down.text
            print(f"\n/metrics with the database down answered in {[f'{t:.2f}' for t in took]} s")
            assert max(took) < 10.0
            assert "fapiao_http_requests_total{" in down.text  # counted in the process
            assert "fapiao_db_pool_in_use{" in down.text
            assert "fapiao_projection_head{" not in down.text  # skipped, and counted:
            line = next(
                ln
                for ln in down.text.splitlines()
                if ln.startswith('fapiao_metrics_collect_errors_total{part="projections"}')
            )
            assert float(line.split()[-1]) == 3  # each scrape skipped it
            cluster.start()
            back = time.monotonic()
            while "fapiao_projection_head{" not in client.get("/metrics").text:
                assert time.monotonic() - back < 30, "metrics never read the database again"
                time.sleep(0.5)
    finally:
        services.close()
