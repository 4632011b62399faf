"""No secret in logs: SQL parameters are never logged or put in error messages (webhook secrets
and key hashes are parameters), and log lines mask what looks like a secret. (The bundle
verifier resolving only our own topics is tests/e2e/test_evidence.py's
test_a_bundle_naming_foreign_topics_is_refused_without_importing_them.)"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError

from api.http.app import create_app
from api.http.errors import to_problem
from infrastructure.bootstrap import Services
from infrastructure.outbound import OutboundGuard
from infrastructure.store.tables import api_keys
from infrastructure.structured_logs import redact_secrets
from tests.e2e.test_api import Api


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    services.webhooks.guard = OutboundGuard.from_setting("127.0.0.1/32")
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def test_sql_logging_never_shows_a_webhook_secret(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        r = api.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        api.get("/v1/webhooks")
    secret = r.json()["secret"]
    assert "INSERT INTO webhook_subscriptions" in caplog.text  # the statements were logged
    assert secret not in caplog.text


def test_a_failing_statement_is_logged_without_its_parameters_or_row(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy hides the parameters; PostgreSQL's DETAIL (the failing row) is not logged."""
    secret = "fwh_" + "s3cr3t" * 6
    for engine in (services.engine, services.write_engine):
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id="k",
                    tenant_id=None,  # NOT NULL: refused on both stores
                    secret_hash=secret,
                    roles="clerk",
                    label="",
                    created_at=datetime.now(UTC),
                )
            )
        assert "parameters hidden" in str(caught.value)
        with caplog.at_level(logging.ERROR, logger="fapiao"):
            response = to_problem(caught.value)
        assert response.status_code == 500
        assert "unhandled database error" in caplog.text
        assert secret not in caplog.text and secret not in bytes(response.body).decode()
        caplog.clear()


def test_log_lines_mask_keys_and_webhook_secrets() -> None:
    event = {
        "event": "failed: fpl_abc123_DEFxyz and fwh_QWErty-123",
        "secret": "anything",
        "detail": "x",
    }
    out = redact_secrets(None, "info", dict(event))
    assert "DEFxyz" not in out["event"] and "QWErty" not in out["event"]
    assert out["secret"] == "[redacted]" and out["detail"] == "x"


def test_log_lines_mask_secrets_nested_in_extra_fields() -> None:
    """An `extra=` field holding a dict or a list is masked at every depth."""
    event = {
        "event": "webhook",
        "request": {"Authorization": "Bearer fpl_abc123_DEFxyz", "headers": ["fwh_QWErty-1"]},
        "attempts": [{"token": "t0p", "url": "https://erp.example/hook"}],
        "count": 3,
    }
    out = redact_secrets(None, "info", event)
    assert out["request"] == {"Authorization": "[redacted]", "headers": ["fwh_[redacted]"]}
    assert out["attempts"] == [{"token": "[redacted]", "url": "https://erp.example/hook"}]
    assert out["count"] == 3 and out["event"] == "webhook"
