"""The probe's inputs over HTTP, on both stores: each is a 4xx problem naming the field and
its rule, and writes nothing (no event, no stored file)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import BASIC_COLUMNS
from tests.builders import SELLER, issue_json
from tests.e2e.test_api import Api
from tests.integration.test_reconciliation import platform_row

BIG = str(2**63)


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def _problem(r: Any, field: str, status: int = 422) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert field in r.text, r.text


QUERIES = [
    ("/v1/invoices", {"seller": "\x00"}, "seller"),
    ("/v1/invoices", {"buyer": "a\x01b"}, "buyer"),
    ("/v1/invoices", {"max_total": "1e999999"}, "max_total"),
    ("/v1/invoices", {"min_total": "NaN"}, "min_total"),
    ("/v1/invoices", {"max_total": "1" + "0" * 40}, "max_total"),
    ("/v1/invoices", {"seller": "x" * 5000}, "seller"),
    ("/v1/invoices", {"consistent_after": BIG}, "consistent_after"),
    ("/v1/invoices", {"issued_from": "9999-12-31"}, "issued_from"),
    ("/v1/queues/overdue", {"offset": BIG}, "offset"),
    ("/v1/queues/mismatched", {"offset": BIG}, "offset"),
    ("/v1/queues/overdue", {"consistent_after": BIG}, "consistent_after"),
    ("/v1/ledger/events", {"after_position": BIG}, "after_position"),
    ("/v1/ledger/events", {"to_position": BIG}, "to_position"),
    ("/v1/invoices/x/as-of", {"at": "9999-12-31T23:59:59-12:00"}, "at"),
    ("/v1/ledger/inclusion", {"position": BIG}, "position"),
    ("/v1/ledger/leaves", {"after_position": BIG}, "after_position"),
    ("/v1/checkpoints/consistency", {"first": BIG, "second": "1"}, "first"),
]


@pytest.mark.parametrize(("path", "params", "field"), QUERIES)
def test_query_parameters_are_bounded(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    before = api.events_stored()
    r = api.client.get(path, params=params, headers=api.auditor)
    _problem(r, field)
    assert api.events_stored() == before


def test_consistent_after_beyond_the_head_is_refused_at_once(api: Api) -> None:
    inv = api.issue()
    r = api.get(f"/v1/invoices/{inv['invoice_id']}", consistent_after=inv["position"] + 1000)
    _problem(r, "consistent_after")
    assert r.elapsed.total_seconds() < 1.0


BODIES = [
    ("/v1/invoices", issue_json(amount="1e30", total="1e30"), "amount"),
    ("/v1/invoices", issue_json(amount="1" + "0" * 40), "amount"),
    (
        "/v1/invoices",
        issue_json(amount="10000000000000000", tax="0", total="10000000000000000"),
        "amount",
    ),
    (
        "/v1/invoices",
        issue_json(seller={"name": "北京\x00云帆", "taxpayer_code": "91110108769914581E"}),
        "seller.name",
    ),
    (
        "/v1/invoices",
        issue_json(buyer={"name": "x" * 10_000, "taxpayer_code": "91330100716105852F"}),
        "buyer.name",
    ),
    ("/v1/invoices", issue_json(issued_on="9999-12-31"), "issued_on"),
    ("/v1/invoices", issue_json(issued_on="1900-01-01"), "issued_on"),
    (
        "/v1/policy/maintenance-windows",
        {
            "starts_at": "2026-11-28T22:00:00+08:00",
            "ends_at": "2026-11-29T06:00:00+08:00",
            "note": "up\x00grade",
        },
        "note",
    ),
    (
        "/v1/policy/maintenance-windows",
        {
            "starts_at": "2026-11-28T22:00:00+08:00",
            "ends_at": "9999-12-31T23:59:59-12:00",
            "note": "x",
        },
        "ends_at",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), BODIES)
def test_bodies_are_bounded(api: Api, path: str, body: Any, field: str) -> None:
    admin = api.key(
        api.services.keys.tenant_of_key(api.clerk) if False else "91110108769914581E", "clerk,admin"
    )
    before = api.events_stored()
    r = api.client.post(path, json=body, headers=admin)
    _problem(r, field)
    assert api.events_stored() == before


@pytest.mark.parametrize("hours", ["Infinity", "NaN", 1e308, "1e999"])
def test_ack_window_must_be_finite_and_bounded(api: Api, hours: Any) -> None:
    admin = api.key(SELLER, "admin")
    before = api.events_stored()
    r = api.client.put("/v1/policy/ack-window", json={"hours": hours}, headers=admin)
    _problem(r, "hours")
    assert api.events_stored() == before


def _reconcile(api: Api, name: str, content: bytes, **form: str) -> Any:
    return api.client.post(
        "/v1/reconciliations", files={"file": (name, content)}, data=form, headers=api.clerk
    )


HEADER = ",".join(BASIC_COLUMNS)
ROW = ",".join(str(v) for v in platform_row("26112000000000000001"))
CSV = f"{HEADER}\n{ROW}\n".encode()
HUGE_CELL = f"{HEADER}\n{ROW}\n".encode() + b'"' + b"x" * (129 * 1024) + b'",1\n'


@pytest.mark.parametrize(
    ("name", "content", "form", "field"),
    [
        ("..", CSV, {}, "file"),
        ("export.csv", CSV, {"encoding": "rot13"}, "encoding"),
        ("export.csv", CSV, {"encoding": "utf-16"}, "encoding"),
        ("export.xlsx", b"PK\x03\x04 not a zip at all", {}, "file"),
        (
            "export.csv",
            "发票号码,开票日期,价税合计\n".encode() + b"1" * (129 * 1024) + b",2026-11-18,1\n",
            {},
            "file",
        ),
    ],
)
def test_reconciliation_uploads_are_refused_without_a_trace(
    api: Api, name: str, content: bytes, form: dict[str, str], field: str
) -> None:
    before = api.events_stored()
    r = _reconcile(api, name, content, **form)
    _problem(r, field)
    assert api.events_stored() == before


def test_a_file_name_with_a_nul_byte_is_refused(api: Api) -> None:
    """Sent as raw multipart (clients escape it; an attacker does not)."""
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a\x00b.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        + CSV
        + f"\r\n--{boundary}--\r\n".encode()
    )
    before = api.events_stored()
    r = api.client.post(
        "/v1/reconciliations",
        content=body,
        headers={**api.clerk, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    _problem(r, "file")
    assert api.events_stored() == before
