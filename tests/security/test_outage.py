"""A deliberate outage: the database stops under a running API. Every answer is then a 503
problem with Retry-After (never a 500), /readyz says unavailable, and service resumes when the
database is back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from tests.builders import issue_json
from tests.e2e.test_api import Api
from tests.fakes import SettableClock
from tests.pg_cluster import PrivateCluster


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    c = PrivateCluster.create()
    try:
        c.start()
        yield c
    finally:
        c.remove()


@pytest.mark.postgres
@pytest.mark.slow
def test_while_the_database_is_down_every_answer_is_503_with_retry_after(
    cluster: PrivateCluster, tmp_path: object
) -> None:
    cluster.execute("CREATE DATABASE outage")
    settings = Settings(
        database_url=cluster.url("outage"),
        environment="test",
        data_dir=tmp_path,  # type: ignore[arg-type]
        lock_timeout_seconds=1,
    )
    migrate.upgrade(settings)
    services = build_services(settings, SettableClock())
    try:
        with TestClient(create_app(services=services)) as client:
            api = Api(client, services)
            inv = api.issue()
            cluster.stop()
            answers = [
                api.get(f"/v1/invoices/{inv['invoice_id']}"),
                api.get("/v1/invoices"),
                api.post("/v1/invoices", issue_json()),
                client.get("/readyz"),
            ]
            for r in answers:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                assert int(r.headers["Retry-After"]) >= 1
                assert r.headers["content-type"].startswith(
                    ("application/problem+json", "application/json")
                )
            cluster.start()
            again = api.get("/v1/invoices")
            for _ in range(20):  # pools drop dead connections as they meet them
                if again.status_code == 200:
                    break
                assert again.status_code == 503
                again = api.get("/v1/invoices")
            assert again.status_code == 200
            assert api.post("/v1/invoices", issue_json()).status_code == 201
    finally:
        services.close()
