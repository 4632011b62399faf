"""Text that no store can keep, and header values that are kept, are refused (422 naming the
field), never repaired or stored: lone UTF-16 surrogates in JSON (escaped or as the raw bytes
ED A0 80), invalid UTF-8 in a form, control characters in Idempotency-Key and X-Actor-User,
control characters in an attachment's file name. A name in UTF-8 (张三) is a person's name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import SELLER, issue_json
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import a_missing_invoice, attach, events_of
from tests.integration.test_attachments import PDF


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def _problem(r: Any, field: str, rule: str) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    errors = r.json()["errors"]
    assert any(e["field"].endswith(field) and e["rule"] == rule for e in errors), errors


def _raw(api: Api, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return api.client.post(
        path,
        content=body,
        headers={
            **api.key(SELLER, "clerk,admin"),
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/invoices", None, "buyer.name"),
        (
            "/v1/policy/maintenance-windows",
            b'{"starts_at": "2026-11-28T22:00:00+08:00", '
            b'"ends_at": "2026-11-29T02:00:00+08:00", "note": "\\ud800"}',
            "note",
        ),
        (
            "/v1/webhooks",
            b'{"url": "https://example.com/\\ud800", "events": ["invoice.missing"]}',
            "url",
        ),
        (
            "/v1/reentry-applications",
            b'{"invoices": ["26112240000000000078"], "reason": "\\udfff"}',
            "reason",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(
    api: Api, path: str, body: bytes | None, field: str
) -> None:
    if body is None:
        doc = issue_json()
        doc["buyer"]["name"] = "PLACEHOLDER"
        import orjson

        body = orjson.dumps(doc).replace(b"PLACEHOLDER", b"\\ud800")
    before = api.events_stored()
    _problem(_raw(api, path, body), field, "encoding")
    assert api.events_stored() == before
    # and the connection is still good for the next request
    assert api.client.get("/v1/invoices", headers=api.key(SELLER, "clerk")).status_code == 200


def test_the_raw_bytes_of_a_surrogate_are_refused(api: Api) -> None:
    body = b'{"invoices": ["26112240000000000078"], "reason": "\xed\xa0\x80"}'
    before = api.events_stored()
    _problem(_raw(api, "/v1/reentry-applications", body), "reason", "encoding")
    assert api.events_stored() == before


def test_a_form_that_is_not_utf8_is_refused(api: Api) -> None:
    r = api.client.post(
        "/console/complaints",
        content=b"demand=ok\xed\xa0\x80",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _problem(r, "body", "encoding")


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Actor-User"])
def test_control_characters_in_kept_headers_are_refused(api: Api, header: str) -> None:
    erp = api.services.keys.create_key(SELLER, "clerk", acts_for_users=True)[1]
    before = api.events_stored()
    r = api.client.post(
        "/v1/invoices",
        json=issue_json(),
        headers={"Authorization": f"Bearer {erp}", header: "a\x1fb"},
    )
    _problem(r, header, "control_characters")
    assert api.events_stored() == before


def test_an_erp_key_may_name_a_person_in_utf8(api: Api) -> None:
    erp = api.services.keys.create_key(SELLER, "clerk", acts_for_users=True)[1]
    headers = [
        (b"authorization", f"Bearer {erp}".encode()),
        (b"x-actor-user", "张三".encode()),
        (b"content-type", b"application/json"),
    ]
    import orjson

    r = api.client.post("/v1/invoices", content=orjson.dumps(issue_json()), headers=headers)
    assert r.status_code == 201, r.text
    actors = [e.actor for e in events_of(api.services, r.json()["invoice_id"])]
    assert actors and all(a.endswith("/user:张三") for a in actors), actors


def _attach_raw(api: Api, app_id: str, name: bytes) -> Any:
    """A multipart upload with the file name's bytes as sent (a client library would escape
    them; a hostile client does not)."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
        + name
        + b'"\r\nContent-Type: application/pdf\r\n\r\n'
        + PDF
        + b"\r\n--b--\r\n"
    )
    return api.client.post(
        f"/v1/reentry-applications/{app_id}/attachments",
        content=body,
        headers={**api.clerk, "Content-Type": "multipart/form-data; boundary=b"},
    )


def _stored(api: Api) -> list[Path]:
    root = api.services.attachments.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (b"a\x00.pdf", "control_characters"),
        (b"a\x1b[31m.pdf", "control_characters"),
        (b"x" * 201 + b".pdf", "file_name"),
        (b"..", "file_name"),
    ],
)
def test_an_attachment_name_that_is_not_plain_is_refused_and_nothing_kept(
    api: Api, name: bytes, rule: str
) -> None:
    inv = a_missing_invoice(api)
    app = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "x"})
    assert app.status_code == 201, app.text
    stored = _stored(api)
    _problem(_attach_raw(api, app.json()["application_id"], name), "file", rule)
    assert _stored(api) == stored


def test_a_path_keeps_its_last_part(api: Api) -> None:
    inv = a_missing_invoice(api)
    app = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "x"})
    r = attach(api, app.json()["application_id"], PDF, "C:\\Users\\clerk\\发票.pdf")
    assert r.status_code == 201, r.text
    assert "发票.pdf" in r.text and "Users" not in r.text, r.text


@pytest.mark.parametrize(
    ("step", "body", "field"),
    [
        ("submission-failures", {"reason_code": "x" * 5000}, "reason_code"),
        ("submission-failures", {"reason_code": "timeout", "detail": "d" * 2001}, "detail"),
        ("submissions", {"channel": "api", "batch_ref": "B" * 65}, "batch_ref"),
        ("submissions", {"channel": "a\nb"}, "channel"),
    ],
)
def test_codes_and_notes_keep_their_lengths(
    api: Api, step: str, body: dict[str, Any], field: str
) -> None:
    created = api.post("/v1/invoices", issue_json())
    assert created.status_code == 201, created.text
    ref = created.json()["invoice_id"]
    if step == "submission-failures":
        assert api.post(f"/v1/invoices/{ref}/submissions", {"channel": "api"}).status_code == 200
    before = api.events_stored()
    r = api.post(f"/v1/invoices/{ref}/{step}", body)
    assert r.status_code == 422, r.text
    assert any(e["field"].endswith(field) for e in r.json()["errors"]), r.text
    assert api.events_stored() == before
