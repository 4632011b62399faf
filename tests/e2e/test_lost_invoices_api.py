"""Lost paper invoice cases and correction links over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import a_number
from tests.e2e.test_api import Api
from tests.integration.test_attachments import JPEG, PDF


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def test_a_lost_paper_invoice_from_loss_to_certificate(api: Api) -> None:
    paper = api.issue(
        invoice_type="legacy_special_paper", code="1100261130", number=a_number()[-8:]
    )
    r = api.post(
        "/v1/lost-invoice-cases",
        {
            "invoice": paper["invoice_key"],
            "lost_on": "2026-11-18",
            "place": "上海虹桥站",
            "circumstances": "公文包遗失",
        },
    )
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["number"].startswith("LP-2026-")
    base = f"/v1/lost-invoice-cases/{case['case_id']}"
    assert api.post(f"{base}/closure", {"outcome": "certificate_obtained"}).status_code == 422
    assert (
        api.post(
            f"{base}/copy-request", {"issuer": "北京云帆科技有限公司", "requested_on": "2026-11-19"}
        ).status_code
        == 200
    )
    scan = api.client.post(
        f"{base}/attachments",
        files={"file": ("报失.jpg", JPEG)},
        data={"step": "loss"},
        headers=api.clerk,
    )
    assert scan.status_code == 201
    cert = api.post(
        f"{base}/certificate", {"certificate_number": "京税证 2026-0457", "issued_on": "2026-11-20"}
    )
    assert cert.json()["certificate_number"] == "京税证 2026-0457"
    api.client.post(
        f"{base}/attachments",
        files={"file": ("证明单.pdf", PDF)},
        data={"step": "certificate"},
        headers=api.clerk,
    )
    closed = api.post(f"{base}/closure", {"outcome": "certificate_obtained"}).json()
    assert closed["status"] == "certificate_obtained"
    assert [a["step"] for a in closed["attachments"]] == ["loss", "certificate"]
    assert (
        api.post(f"{base}/copy-request", {"issuer": "x", "requested_on": "2026-11-21"}).status_code
        == 409
    )


def test_only_paper_invoices_can_be_lost_and_input_is_checked(api: Api) -> None:
    electronic = api.issue()
    r = api.post(
        "/v1/lost-invoice-cases",
        {"invoice": electronic["invoice_id"], "lost_on": "2026-11-18", "circumstances": "x"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "paper_only"
    paper = api.issue(
        invoice_type="legacy_special_paper", code="1100261130", number=a_number()[-8:]
    )
    future = api.post(
        "/v1/lost-invoice-cases",
        {"invoice": paper["invoice_id"], "lost_on": "2099-01-01", "circumstances": "x"},
    )
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "lost_on"
    assert (
        api.post(
            "/v1/lost-invoice-cases",
            {"invoice": paper["invoice_id"], "lost_on": "2026-11-18", "circumstances": "x"},
            api.auditor,
        ).status_code
        == 403
    )


def test_a_reversed_invoice_and_its_red_and_replacement_invoices_link_both_ways(
    api: Api,
) -> None:
    from tests.builders import issue_json

    original = api.issue()
    ref = original["invoice_id"]
    api.post(f"/v1/invoices/{ref}/submissions", {})
    api.post(f"/v1/invoices/{ref}/acknowledgements", {"platform_ref": "SW1"})
    red_key, new_key = a_number(), a_number()
    reversal = api.post(
        f"/v1/invoices/{ref}/red-reversals",
        {
            "confirmation_number": "11010826112001615708",
            "red_invoice_key": red_key,
            "scope": "full",
            "reason_code": "01",
        },
    )
    assert reversal.status_code == 200
    red = api.post(
        "/v1/invoices",
        issue_json(
            number=red_key,
            amount="-1000.00",
            tax="-130.00",
            total="-1130.00",
            reverses_key=original["invoice_key"],
            lines=[
                {
                    "name": "*信息技术服务*软件维护",
                    "amount": "-1000.00",
                    "tax": "-130.00",
                    "rate": "0.13",
                }
            ],
        ),
    )
    assert red.status_code == 201, red.text
    replacement = api.post(
        "/v1/invoices", issue_json(number=new_key, replaces_key=original["invoice_key"])
    )
    assert replacement.status_code == 201
    position = replacement.json()["position"]
    view = api.get(f"/v1/invoices/{ref}", consistent_after=position).json()
    assert view["status"] == "reversed"
    assert view["red_invoice_keys"] == [red_key] and view["replaced_by"] == new_key
    assert api.get(f"/v1/invoices/{red_key}").json()["reverses_key"] == original["invoice_key"]
    assert api.get(f"/v1/invoices/{new_key}").json()["replaces_key"] == original["invoice_key"]
    (event,) = [
        e for e in api.get(f"/v1/invoices/{ref}/events").json() if e["type"] == "RedReversed"
    ]
    assert event["data"]["confirmation_number"] == "11010826112001615708"
