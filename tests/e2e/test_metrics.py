"""`/metrics` scraped like Prometheus does: every family is there with live values, and the
lag, dead-letter and request families move when they should; per-projection numbers are the
ones `fapiao projections status` shows. The worker serves its own with --metrics-port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.http.app import create_app
from application.invoices.lifecycle import SubmitRequest
from infrastructure.bootstrap import Services, build_services
from infrastructure.monitoring.platform_export_reader import (
    PlatformExportReader,
    sha256_of,
    write_export,
)
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, by
from tests.e2e.test_api import Api
from tests.fakes import SettableClock
from tests.integration.test_reconciliation import platform_row
from tests.test_cli import ROOT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {
    "fapiao_http_requests",
    "fapiao_http_request_duration_seconds",
    "fapiao_projection_position",
    "fapiao_projection_head",
    "fapiao_projection_lag",
    "fapiao_projection_dead_letters",
    "fapiao_projection_seconds_since_advance",
    "fapiao_projection_retries",
    "fapiao_timers_pending",
    "fapiao_timers_overdue",
    "fapiao_webhook_deliveries",
    "fapiao_webhook_attempts",
    "fapiao_reconciliation_rows",
    "fapiao_reconciliation_seconds",
    "fapiao_reconciliation_last_rows_per_second",
    "fapiao_checkpoint_tree_size",
    "fapiao_checkpoint_unsigned_events",
    "fapiao_checkpoint_age_seconds",
    "fapiao_db_pool_in_use",
    "fapiao_db_pool_size",
    "fapiao_group_commit_commands",
    "fapiao_group_commit_transactions",
}


def parse(text: str) -> tuple[set[str], Samples]:
    names, samples = set(), {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:  # no workers: we move them
        yield Api(client, services)


def scrape(api: Api) -> tuple[set[str], Samples]:
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def test_every_family_with_live_values_and_the_status_command_numbers(
    api: Api, clock: SettableClock, tmp_path: Path
) -> None:
    s = api.services
    for issued_on in ("2026-11-10", "2026-11-10", "2026-11-18"):  # the export: 11-18
        inv = api.issue(issued_on=issued_on)
        api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    path = write_export(tmp_path / "export.csv", [platform_row(inv["invoice_key"])])
    run = s.reconciliation.reconcile(
        SELLER, PlatformExportReader(path, None), sha256_of(path), path.name, by()
    )
    for worker in s.workers.values():
        worker.catch_up()
    s.merkle.checkpoint_now()
    clock.advance(timedelta(days=2))  # every acknowledgement window has run out
    names, samples = scrape(api)
    assert FAMILIES <= names, FAMILIES - names
    commands = value(samples, "fapiao_group_commit_commands_total")
    assert commands >= 6  # 3 issued, 3 submitted: each through the command loop
    assert 0 < value(samples, "fapiao_group_commit_transactions_total") <= commands
    for row in s.projection_status():  # the numbers `fapiao projections status` prints
        p = row["projection"]
        assert value(samples, "fapiao_projection_position", projection=p) == row["position"]
        assert value(samples, "fapiao_projection_head", projection=p) == row["head"]
        assert value(samples, "fapiao_projection_lag", projection=p) == row["lag"] == 0
        assert value(samples, "fapiao_projection_dead_letters", projection=p) == 0
    assert value(samples, "fapiao_timers_pending", kind="acknowledgement") == 2
    assert value(samples, "fapiao_timers_overdue", kind="acknowledgement") == 2
    assert value(samples, "fapiao_reconciliation_rows_total") == run.rows == 1
    assert value(samples, "fapiao_reconciliation_last_rows_per_second") > 0
    assert value(samples, "fapiao_checkpoint_tree_size") == s.projection_status()[0]["head"]
    assert value(samples, "fapiao_checkpoint_age_seconds") >= 0
    assert (
        value(
            samples, "fapiao_http_requests_total", route="/v1/invoices", method="POST", status="201"
        )
        == 3
    )
    assert value(samples, "fapiao_webhook_deliveries", status="pending") == 0
    assert ("fapiao_db_pool_in_use", (("pool", "read"),)) in samples


def test_lag_dead_letters_and_requests_move_when_they_should(api: Api) -> None:
    s = api.services
    _, before = scrape(api)
    lag0 = value(before, "fapiao_projection_lag", projection="invoice_status")
    for _ in range(4):
        api.issue()
    assert api.get("/v1/invoices/nonexistent").status_code == 404
    _, after = scrape(api)
    assert value(after, "fapiao_projection_lag", projection="invoice_status") == lag0 + 4
    assert (
        value(
            after, "fapiao_http_requests_total", route="/v1/invoices", method="POST", status="201"
        )
        - value(
            before, "fapiao_http_requests_total", route="/v1/invoices", method="POST", status="201"
        )
        == 4
    )
    assert (
        value(
            after,
            "fapiao_http_requests_total",
            route="/v1/invoices/{ref}",
            method="GET",
            status="404",
        )
        == 1
    )
    assert (
        value(
            after, "fapiao_http_request_duration_seconds_count", route="/v1/invoices", method="POST"
        )
        >= 4
    )
    s.ledger.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "fapiao.nonsense.v9", b"{}")])
    s.worker("invoice_status").catch_up()
    _, later = scrape(api)
    assert value(later, "fapiao_projection_lag", projection="invoice_status") == 0
    assert value(later, "fapiao_projection_dead_letters", projection="invoice_status") == 1
    assert value(later, "fapiao_projection_lag", projection="seal") == lag0 + 5
    assert value(later, "fapiao_projection_seconds_since_advance", projection="invoice_status") < 60
    api.client.get("/no/such/route")
    _, last = scrape(api)
    assert (
        value(last, "fapiao_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )


def test_the_token_and_the_separate_listener_settings(services: Services) -> None:
    guarded = services.settings.model_copy(update={"metrics_token": SecretStr("s3cret")})
    svc = build_services(guarded)
    try:
        with TestClient(create_app(services=svc)) as client:
            assert client.get("/metrics").status_code == 401
            assert (
                client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
            )
            ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200 and "fapiao_projection_lag" in ok.text
    finally:
        svc.close()
    elsewhere = services.settings.model_copy(update={"metrics_address": "127.0.0.1:9464"})
    svc = build_services(elsewhere)
    try:
        with TestClient(create_app(services=svc)) as client:
            assert client.get("/metrics").status_code == 404
    finally:
        svc.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_worker_serves_its_metrics(settings: Settings) -> None:
    svc = build_services(settings)
    try:
        inv = svc.ledger.issue_invoice(SELLER, a_draft(), by())
        svc.ledger.change_invoice(SELLER, inv.invoice_id, SubmitRequest(channel="erp"), by())
    finally:
        svc.close()
    port = free_port()
    env = {
        **os.environ,
        "FAPIAO_DATABASE_URL": settings.url.render_as_string(hide_password=False),
        "FAPIAO_DATA_DIR": str(settings.data_dir),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli.main",
            "worker",
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        samples: Samples = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310
                    _, samples = parse(r.read().decode())
            except OSError:
                time.sleep(0.3)
                continue
            if value(samples, "fapiao_projection_position", projection="invoice_status") == 2:
                break
            time.sleep(0.3)
        assert value(samples, "fapiao_projection_position", projection="invoice_status") == 2
        assert value(samples, "fapiao_projection_lag", projection="invoice_status") == 0
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_part_that_cannot_be_read_is_skipped_and_counted(api: Api) -> None:
    names, samples = scrape(api)
    assert "fapiao_webhook_deliveries" in names
    assert value(samples, "fapiao_metrics_collect_errors_total", part="webhooks") == 0
    with api.services.write_engine.begin() as conn:  # the table gone: that part fails
        conn.exec_driver_sql("ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_away")
    try:
        names, samples = scrape(api)
    finally:
        with api.services.write_engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE webhook_deliveries_away RENAME TO webhook_deliveries")
    assert "fapiao_webhook_deliveries" not in names
    assert {"fapiao_projection_head", "fapiao_checkpoint_tree_size"} <= names  # the rest read
    assert value(samples, "fapiao_metrics_collect_errors_total", part="webhooks") == 1
    assert value(samples, "fapiao_metrics_collect_errors_total", part="projections") == 0
    names, samples = scrape(api)
    assert "fapiao_webhook_deliveries" in names
