"""The HTTP API wired to a real, migrated store (SQLite and PostgreSQL), driven over ASGI."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import OTHER_TENANT, SELLER, issue_json
from tests.unit.test_issuance import RULES


class Api:
    def __init__(self, client: TestClient, services: Services) -> None:
        self.client, self.services = client, services
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        services.keys.ensure_tenant(OTHER_TENANT, "南通")
        self.clerk = self.key(SELLER, "clerk")
        self.auditor = self.key(SELLER, "auditor")
        self.other = self.key(OTHER_TENANT, "clerk,auditor")

    def key(self, tenant: str, roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.services.keys.create_key(tenant, roles)[1]}"}

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(path, json=body, headers=headers or self.clerk)

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=headers or self.clerk)

    def issue(self, **changes: Any) -> dict[str, Any]:
        r = self.post("/v1/invoices", issue_json(**changes))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def events_stored(self) -> int:
        table = "ledger_events" if self.services.settings.is_postgres else "stored_events"
        with self.services.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def test_issue_then_read_your_own_write(api: Api) -> None:
    body = issue_json()
    r = api.post("/v1/invoices", body)
    assert r.status_code == 201 and r.headers["location"].endswith(r.json()["invoice_id"])
    created = r.json()
    assert created["status"] == "issued" and created["warnings"] == []
    got = api.get(f"/v1/invoices/{created['invoice_id']}", consistent_after=created["position"])
    assert got.status_code == 200
    inv = got.json()
    assert (inv["invoice_key"], inv["total"], inv["status"]) == (
        body["number"],
        "1130.00",
        "issued",
    )
    assert inv["issued_at"].endswith("+08:00")
    by_key = api.get(f"/v1/invoices/{body['number']}")
    assert by_key.json()["invoice_id"] == created["invoice_id"]


def test_the_whole_lifecycle_over_http(api: Api) -> None:
    inv = api.issue()
    ref = inv["invoice_id"]
    steps = [
        ("submissions", {"channel": "erp"}, "submitted"),
        ("submission-failures", {"reason_code": "timeout"}, "submission_failed"),
        ("submissions", {}, "submitted"),
        ("missing-reports", {"note": "not in the platform"}, "missing"),
        ("acknowledgements", {"platform_ref": "ACK-1", "learned_via": "callback"}, "acknowledged"),
        (
            "red-reversals",
            {
                "confirmation_number": "11010826112001615708",
                "red_invoice_key": "26112000000135119999",
                "scope": "partial",
                "reason_code": "04",
                "amount": "113.00",
            },
            "partially_reversed",
        ),
    ]
    position = 0
    for path, body, status in steps:
        r = api.post(f"/v1/invoices/{ref}/{path}", body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
        position = r.json()["position"]
    view = api.get(f"/v1/invoices/{ref}", consistent_after=position).json()
    assert view["submission_attempts"] == 2 and view["acknowledged_late"] is True
    assert view["reversed_amount"] == "113.00" and view["red_invoice_keys"] == [
        "26112000000135119999"
    ]
    events = api.get(f"/v1/invoices/{ref}/events").json()
    assert [e["type"] for e in events] == [
        "Issued",
        "Submitted",
        "SubmissionFailed",
        "Submitted",
        "MarkedMissing",
        "Acknowledged",
        "RedReversed",
    ]
    assert all(e["actor"].startswith("key:") and e["source"] == "api" for e in events)


def as_json(value: Any) -> Any:
    """A domain-test change as the JSON an ERP would send."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: as_json(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, tuple | list):
        return [as_json(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


# Every rule of the domain suite, sent over HTTP, plus the ones only the edge can break.
HTTP_RULES = [({k: as_json(v) for k, v in c.items()}, f, r) for c, f, r in RULES] + [
    ({"issued_on": "2099-01-01"}, "issued_on", "issue_date_in_future"),
    ({"issued_on": "yesterday"}, "issued_on", "date_from_datetime_parsing"),
    ({"number": 26112000000135114086}, "number", "string_type"),
    ({"seller": {"taxpayer_code": SELLER}}, "seller.name", "missing"),
    ({"lines": [{"name": "x"}]}, "lines[0].amount", "missing"),
    ({"unexpected": 1}, "unexpected", "extra_forbidden"),
]


@pytest.mark.parametrize(
    "changes,field,rule", HTTP_RULES, ids=[f"{f}:{r}" for _, f, r in HTTP_RULES]
)
def test_every_validation_rule_is_a_422_naming_the_field_and_nothing_is_stored(
    api: Api, changes: dict[str, Any], field: str, rule: str
) -> None:
    r = api.post("/v1/invoices", issue_json(**changes))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert (field, rule) in [(e["field"], e["rule"]) for e in problem["errors"]], problem
    assert api.events_stored() == 0


def test_a_float_amount_is_refused_with_its_rule(api: Api) -> None:
    r = api.post("/v1/invoices", issue_json(amount=1000.0))
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "field": "amount",
        "rule": "money_format",
        "message": 'must be a decimal string such as "100.00", not a float',
    }


def test_idempotency_key_repeats_the_first_answer_or_refuses_a_different_body(api: Api) -> None:
    headers = {**api.clerk, "Idempotency-Key": "erp-42"}
    body = issue_json()
    first = api.post("/v1/invoices", body, headers)
    again = api.post("/v1/invoices", body, headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["replayed"] is True
    assert {k: v for k, v in again.json().items() if k != "replayed"} == {
        k: v for k, v in first.json().items() if k != "replayed"
    }
    other = api.post("/v1/invoices", issue_json(), headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:fapiao:problem:idempotency-key-reused"


def test_business_conflicts_are_409_with_the_status_and_step(api: Api) -> None:
    inv = api.issue()
    r = api.post(f"/v1/invoices/{inv['invoice_id']}/acknowledgements", {"platform_ref": "A"})
    assert r.status_code == 409
    assert (r.json()["current_status"], r.json()["step"]) == ("issued", "acknowledge")
    dup = api.post("/v1/invoices", issue_json(number=inv["invoice_key"]))
    assert dup.status_code == 409 and dup.json()["type"].endswith("already-exists")
    void = api.post(f"/v1/invoices/{inv['invoice_id']}/voids", {"reason": "x"})
    assert void.status_code == 409 and void.json()["rule"] == "void_electronic"


def test_tenants_are_isolated_and_roles_enforced(api: Api) -> None:
    inv = api.issue()
    ref = inv["invoice_id"]
    assert api.get(f"/v1/invoices/{ref}", api.other).status_code == 404
    assert api.post(f"/v1/invoices/{ref}/submissions", {}, api.other).status_code == 404
    assert api.get(f"/v1/invoices/{ref}/events", api.other).status_code == 404
    denied = api.post(f"/v1/invoices/{ref}/submissions", {}, api.auditor)
    assert denied.status_code == 403 and "auditor" in denied.json()["detail"]
    assert api.post("/v1/invoices", issue_json(), api.auditor).status_code == 403
    assert (
        api.get(f"/v1/invoices/{ref}", api.auditor, consistent_after=inv["position"]).status_code
        == 200
    )
    assert api.client.get(f"/v1/invoices/{ref}").status_code == 401
    bad = api.client.get("/v1/invoices", headers={"Authorization": "Bearer fpl_nope_nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    key_id = api.services.keys.list_keys(SELLER)[0].key_id
    api.services.keys.revoke(key_id)
    assert api.get("/v1/invoices").status_code == 401


def test_listing_filters_paginates_and_counts(api: Api) -> None:
    position = 0
    for day, total in [
        ("2026-11-01", "113.00"),
        ("2026-11-02", "226.00"),
        ("2026-11-03", "1130.00"),
        ("2026-11-04", "2260.00"),
        ("2026-11-05", "11300.00"),
    ]:
        amount = f"{float(total) / 1.13:.2f}"
        tax = f"{float(total) - float(amount):.2f}"
        inv = api.issue(
            issued_on=day, amount=amount, tax=tax, total=total, lines=[], tax_rate="0.13"
        )
        position = inv["position"]
    r = api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    position = r.json()["position"]
    page1 = api.get("/v1/invoices", limit=2, consistent_after=position).json()
    assert page1["total"] == 5 and [i["issued_on"] for i in page1["items"]] == [
        "2026-11-05",
        "2026-11-04",
    ]
    page2 = api.get("/v1/invoices", limit=2, cursor=page1["next_cursor"]).json()
    page3 = api.get("/v1/invoices", limit=2, cursor=page2["next_cursor"]).json()
    assert [i["issued_on"] for i in page2["items"] + page3["items"]] == [
        "2026-11-03",
        "2026-11-02",
        "2026-11-01",
    ]
    assert page3["next_cursor"] is None
    ranged = api.get(
        "/v1/invoices",
        min_total="200",
        max_total="2260.00",
        issued_from="2026-11-02",
        issued_to="2026-11-04",
    ).json()
    assert ranged["total"] == 3
    assert api.get("/v1/invoices", status="submitted").json()["total"] == 1
    assert api.get("/v1/invoices", seller=SELLER.lower()).json()["total"] == 5
    assert api.get("/v1/invoices", buyer="91110108769914581E").json()["total"] == 0
    assert api.get("/v1/invoices", headers=api.other).json()["total"] == 0
    counts = api.get("/v1/invoice-counts").json()
    assert counts == {"counts": {"issued": 4, "submitted": 1}, "total": 5}
    bad = api.get("/v1/invoices", status="lost")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    assert api.get("/v1/invoices", cursor="!!").json()["errors"][0]["field"] == "cursor"


def test_a_batch_issues_all_or_reports_each_bad_invoice(api: Api) -> None:
    ok = api.post("/v1/invoice-batches", {"invoices": [issue_json(), issue_json()]})
    assert ok.status_code == 201 and len(ok.json()["results"]) == 2
    headers = {**api.clerk, "Idempotency-Key": "batch-1"}
    batch = {"invoices": [issue_json(), issue_json()]}
    first = api.post("/v1/invoice-batches", batch, headers)
    before = api.events_stored()
    again = api.post("/v1/invoice-batches", batch, headers)
    assert first.status_code == again.status_code == 201
    assert [r["invoice_id"] for r in again.json()["results"]] == [
        r["invoice_id"] for r in first.json()["results"]
    ]
    assert api.events_stored() == before
    bad = api.post("/v1/invoice-batches", {"invoices": [issue_json(), issue_json(tax="1.00")]})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("invoices[1].")
    assert api.events_stored() == before


def test_health_readiness_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["projections"][0]["projection"] == "invoice_status"
    spec = api.client.get("/openapi.json").json()
    issue = spec["paths"]["/v1/invoices"]["post"]
    assert issue["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    assert schemas["IssueInvoiceRequest"]["examples"][0]["number"] == "26112000000135114086"
    assert "consistent_after" in str(spec["paths"]["/v1/invoices/{ref}"]["get"]["parameters"])
