"""Structured logs: one JSON object per line, the request id from and to X-Request-ID, the
tenant and key id of the caller (never the key), and the domain happenings at INFO: here the
acknowledgement ticker marking an invoice missing."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import write_export
from infrastructure.structured_logs import configure_logging, resolve_format
from tests.builders import issue_json
from tests.e2e.test_api import Api
from tests.fakes import SettableClock
from tests.integration.test_reconciliation import platform_row


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    assert configure_logging("json", "INFO", out) == "json"
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def api(services: Services, log_lines: io.StringIO) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def test_each_request_is_one_json_line_with_its_context_and_no_key(
    api: Api, log_lines: io.StringIO
) -> None:
    r = api.client.post(
        "/v1/invoices",
        json=issue_json(),
        headers={**api.clerk, "X-Request-ID": "erp-7f3a.1"},
    )
    assert r.status_code == 201 and r.headers["x-request-id"] == "erp-7f3a.1"
    made = api.client.get("/v1/invoices/nope", headers={**api.clerk, "X-Request-ID": "bad id!"})
    assert made.status_code == 404 and len(made.headers["x-request-id"]) == 32
    principal = api.services.keys.authenticate(api.clerk["Authorization"][7:])
    assert principal is not None
    lines = [r for r in records(log_lines) if r["event"] == "request"]
    first, second = lines
    assert first["request_id"] == "erp-7f3a.1" and first["route"] == "/v1/invoices"
    assert (first["method"], first["status"]) == ("POST", 201) and first["duration_ms"] > 0
    assert (first["tenant_id"], first["key_id"]) == (principal.tenant_id, principal.key_id)
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert second["route"] == "/v1/invoices/{ref}" and second["status"] == 404
    assert second["request_id"] == made.headers["x-request-id"]
    assert api.clerk["Authorization"][7:] not in log_lines.getvalue()


def test_the_ticker_marking_an_invoice_missing_is_logged_at_info(
    api: Api, clock: SettableClock, log_lines: io.StringIO
) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.services.worker("ack_timers").catch_up()
    clock.advance(timedelta(hours=25))
    assert api.services.ticker.tick().marked
    (marked,) = [r for r in records(log_lines) if r["event"] == "invoice marked missing"]
    assert marked["level"] == "info" and marked["logger"] == "fapiao.happenings"
    assert marked["detected_by"] == "timer" and marked["actor"] == "system:ack-timer"
    assert marked["invoice_key"] == inv["invoice_key"] and marked["tenant_id"]
    assert marked["stream_id"] == inv["invoice_id"] and marked["position"] > 0
    assert marked["window_seconds"] == 24 * 3600


def test_a_signed_checkpoint_is_logged(api: Api, log_lines: io.StringIO) -> None:
    api.issue()
    api.services.worker("seal").catch_up()
    api.services.merkle.checkpoint_now()
    signed = [r for r in records(log_lines) if r["event"] == "checkpoint signed"]
    assert signed and signed[-1]["tree_size"] >= 1 and "root_hash" in signed[-1]


def test_a_reconciliation_is_logged_with_its_counts(
    api: Api, log_lines: io.StringIO, tmp_path: Path
) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    path = write_export(tmp_path / "export.csv", [platform_row(inv["invoice_key"])])
    with path.open("rb") as f:
        r = api.client.post(
            "/v1/reconciliations", files={"file": (path.name, f)}, headers=api.clerk
        )
    assert r.status_code == 201, r.text
    (line,) = [r for r in records(log_lines) if r["event"] == "reconciled"]
    assert line["rows"] == 1 and line["counts"] == {"matched": 1}
    assert line["period_from"] == line["period_to"] == "2026-11-18"


def test_console_lines_on_a_terminal_and_json_otherwise() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w") as terminal:
            assert resolve_format("auto", terminal) == "console"
    finally:
        os.close(leader)
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", io.StringIO()) == "json"
