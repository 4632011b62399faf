"""Supplementary-entry applications over HTTP: the whole staged review, separation of duties,
refused attachments, and gap-free numbers under concurrent creation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from domain.invoices.invoice import Invoice
from domain.remedies.reentry_application import ReEntryApplication
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.integration.test_attachments import MZ, PDF


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def a_missing_invoice(api: Api) -> dict[str, object]:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {"note": "not on platform"})
    return inv


def attach(
    api: Api, app_id: str, content: bytes, name: str, headers: dict[str, str] | None = None
) -> object:
    return api.client.post(
        f"/v1/reentry-applications/{app_id}/attachments",
        files={"file": (name, content)},
        headers=headers or api.clerk,
    )


def events_of(services: Services, aggregate_id: str) -> list[object]:
    return list(services.ledger.events.get(UUID(aggregate_id)))


def test_a_missing_invoice_through_return_resubmission_approval_and_acknowledgement(
    api: Api,
) -> None:
    reviewer, approver = api.key(SELLER, "reviewer"), api.key(SELLER, "approver")
    inv = a_missing_invoice(api)
    r = api.post(
        "/v1/reentry-applications", {"invoices": [inv["invoice_key"]], "reason": "平台查询无此发票"}
    )
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["number"].startswith("BL-2026-") and app["number"].endswith("000001")
    base = f"/v1/reentry-applications/{app['application_id']}"
    incomplete = api.post(f"{base}/submission", {})
    assert incomplete.status_code == 422
    assert {e["field"] for e in incomplete.json()["errors"]} == {
        "attachments",
        "invoices[0].fields",
    }
    fields = api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"buyer_name": "杭州青禾贸易有限公司"}},
        headers=api.clerk,
    )
    assert fields.status_code == 200
    assert attach(api, app["application_id"], PDF, "发票.pdf").status_code == 201  # type: ignore[attr-defined]
    assert api.post(f"{base}/submission", {}).json()["status"] == "submitted"
    returned = api.post(f"{base}/return", {"reasons": ["附件不清晰"]}, reviewer)
    assert returned.json()["status"] == "returned"
    assert api.post(f"{base}/submission", {}).json()["round"] == 2
    assert api.post(f"{base}/review", {"comment": "ok"}, reviewer).json()["status"] == "reviewed"
    approved = api.post(f"{base}/approval", {"comment": "同意补录"}, approver)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    state = api.get(
        f"/v1/invoices/{inv['invoice_id']}", consistent_after=approved.json()["position"]
    ).json()
    assert state["status"] == "re_entered" and state["submission_attempts"] == 2
    acked = api.post(
        f"/v1/invoices/{inv['invoice_id']}/acknowledgements",
        {"platform_ref": "SW-BL", "learned_via": "poll"},
    )
    assert acked.json()["status"] == "acknowledged"

    keys = {
        k["label"] or k["roles"]: k["key_id"]
        for k in (vars(x) for x in api.services.keys.list_keys(SELLER))
    }
    assert keys
    app_events = events_of(api.services, app["application_id"])
    actors = {type(e).__name__: e.actor for e in app_events}  # type: ignore[attr-defined]
    clerk_id = api.services.keys.authenticate(api.clerk["Authorization"][7:]).key_id  # type: ignore[union-attr]
    reviewer_id = api.services.keys.authenticate(reviewer["Authorization"][7:]).key_id  # type: ignore[union-attr]
    approver_id = api.services.keys.authenticate(approver["Authorization"][7:]).key_id  # type: ignore[union-attr]
    assert actors["Drafted"] == actors["Submitted"] == f"key:{clerk_id}"
    assert actors["Returned"] == actors["Reviewed"] == f"key:{reviewer_id}"
    assert actors["Approved"] == f"key:{approver_id}"
    (re_entered,) = [
        e
        for e in events_of(api.services, str(inv["invoice_id"]))
        if isinstance(e, Invoice.ReEntered)
    ]
    assert re_entered.actor == f"key:{approver_id}"
    assert re_entered.application_number == app["number"]
    assert any(
        isinstance(e, ReEntryApplication.Returned) and e.reasons == ["附件不清晰"]
        for e in app_events
    )


def test_separation_of_duties_and_read_only_roles(api: Api) -> None:
    everything = api.key(SELLER, "clerk,reviewer,approver")
    reviewer = api.key(SELLER, "reviewer,approver")
    inv = a_missing_invoice(api)
    app = api.post(
        "/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "x"}, everything
    ).json()
    base = f"/v1/reentry-applications/{app['application_id']}"
    api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"remarks": "补录"}},
        headers=everything,
    )
    attach(api, app["application_id"], PDF, "a.pdf", everything)
    assert api.post(f"{base}/submission", {}, everything).status_code == 200
    own_review = api.post(f"{base}/review", {}, everything)
    assert own_review.status_code == 403
    assert own_review.json()["type"].endswith("separation-of-duties")
    assert api.post(f"{base}/review", {}, reviewer).status_code == 200
    assert api.post(f"{base}/approval", {}, everything).status_code == 403  # the applicant
    assert api.post(f"{base}/approval", {}, reviewer).status_code == 403  # the reviewer
    for path in ("", "/submission", "/review", "/approval", "/withdrawal"):
        body = {"invoices": [inv["invoice_id"]]} if path == "" else {}
        target = "/v1/reentry-applications" if path == "" else f"{base}{path}"
        assert api.post(target, body, api.auditor).status_code == 403
    assert api.get(base, api.auditor).status_code == 200
    assert api.get(base, api.other).status_code == 404


def test_spoofed_oversized_and_empty_attachments_are_refused_and_nothing_is_stored(
    api: Api,
) -> None:
    api.services.attachments.limit = 4096
    inv = a_missing_invoice(api)
    app = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_id"]]}).json()
    before = api.events_stored()
    for content, name, rule in [
        (MZ, "invoice.pdf", "attachment_type"),
        (PDF + b"\0" * 5000, "big.pdf", "attachment_size"),
        (b"", "empty.pdf", "attachment_empty"),
    ]:
        r = attach(api, app["application_id"], content, name)
        assert r.status_code == 422, r.text  # type: ignore[attr-defined]
        assert r.json()["errors"][0]["rule"] == rule  # type: ignore[attr-defined]
    root: Path = api.services.attachments.root
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []
    assert api.events_stored() == before
    r = api.post("/v1/reentry-applications", {"invoices": [str(api.issue()["invoice_id"])]})
    assert r.status_code == 409 and r.json()["current_status"] == "issued"


def test_200_concurrent_drafts_get_200_gap_free_numbers_and_no_conflict(services: Services) -> None:
    """200 clients at once: numbers BL-2026-000001..000200, every draft 201 (none 409)."""
    with TestClient(create_app(services=services)) as client:
        api = Api(client, services)
        invoices = [a_missing_invoice(api) for _ in range(200)]
        answers: list[tuple[int, str]] = []
        barrier = threading.Barrier(len(invoices))

        def draft(inv: dict[str, object]) -> None:
            barrier.wait()
            r = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_id"]]})
            answers.append((r.status_code, r.json().get("number", r.text)))

        threads = [threading.Thread(target=draft, args=(i,)) for i in invoices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = sorted({status for status, _ in answers})
    print(f"\n200 concurrent drafts: statuses {statuses}, {len(answers)} answers")
    assert statuses == [201], [n for s, n in answers if s != 201][:3]
    assert sorted(n for _, n in answers) == [f"BL-2026-{n:06d}" for n in range(1, 201)]
