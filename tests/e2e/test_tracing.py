"""OpenTelemetry tracing by setting: off by default; on, each request is a span with the SQL
it ran beneath it (here printed by the console exporter)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from tests.e2e.test_api import Api


def spans(text: str) -> list[dict[str, object]]:
    """The console exporter prints one indented JSON object per span."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (start := text.find("{", i)) != -1:
        span, i = decoder.raw_decode(text, start)
        found.append(span)
    return found


def test_tracing_is_off_by_default() -> None:
    assert Settings().otel_tracing is False


def test_requests_and_their_sql_are_traced_when_asked(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    traced = sqlite_settings.model_copy(update={"otel_tracing": True, "otel_exporter": "console"})
    services = build_services(traced)
    try:
        with TestClient(create_app(services=services)) as client:
            api = Api(client, services)
            capsys.readouterr()
            assert api.get("/v1/invoice-counts").status_code == 200
        found = spans(capsys.readouterr().out)
    finally:
        services.close()
    names = [str(s["name"]) for s in found]
    assert "opentelemetry" not in capsys.readouterr().err
    request = next(s for s in found if s["name"] == "GET /v1/invoice-counts")
    trace_id = request["context"]["trace_id"]  # type: ignore[index]
    sql = [s for s in found if s["context"]["trace_id"] == trace_id]  # type: ignore[index]
    sql = [s for s in sql if s["kind"] == "SpanKind.CLIENT"]
    assert sql, names
    assert any("SELECT" in str(s["attributes"]) for s in sql)
