"""Complaint cases and case deadlines over HTTP on a controllable clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from domain.remedies.complaint import Complaint
from domain.remedies.reentry_application import ReEntryApplication
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import a_missing_invoice, attach
from tests.fakes import SettableClock
from tests.integration.test_attachments import PDF, PNG


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def tick(api: Api) -> list[tuple[str, str]]:
    for worker in api.services.workers.values():
        worker.catch_up()
    return api.services.case_ticker.tick().fired


def key_id(api: Api, headers: dict[str, str]) -> str:
    principal = api.services.keys.authenticate(headers["Authorization"][7:])
    assert principal is not None
    return principal.key_id


def test_a_complaint_with_exchanges_a_missed_deadline_an_escalation_and_a_resolution(
    api: Api, clock: SettableClock
) -> None:
    inv = a_missing_invoice(api)
    today = clock.now().date()  # 2026-11-20, a Friday
    r = api.post(
        "/v1/complaints",
        {
            "invoices": [inv["invoice_key"]],
            "channel": "hotline_12366",
            "demand": "请核查平台为何查询不到该发票",
            "reply_due_on": str(today + timedelta(days=5)),
        },
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["number"].startswith("TS-2026-")
    base = f"/v1/complaints/{c['complaint_id']}"
    assert (
        api.client.post(
            f"{base}/evidence", files={"file": ("截图.png", PNG)}, headers=api.clerk
        ).status_code
        == 201
    )
    exchanges = [
        {
            "at": "2026-11-20T10:05:00+08:00",
            "channel": "hotline_12366",
            "counterpart": "李女士",
            "counterpart_role": "12366 坐席",
            "said": "已登记",
            "promised": "转区局核查",
        },
        {
            "at": "2026-11-21T15:30:00+08:00",
            "channel": "tax_service_hall",
            "counterpart": "王科长",
            "counterpart_role": "办税服务厅",
            "said": "系统有积压",
            "promised": "下周二前答复",
            "promised_reply_on": "2026-11-24",
        },
        {
            "at": "2026-11-23T09:10:00+08:00",
            "channel": "email",
            "counterpart": "区局信息中心",
            "counterpart_role": "技术支持",
            "said": "已收到材料",
        },
    ]
    for body in exchanges:
        assert api.post(f"{base}/exchanges", body).status_code == 200
    c = api.get(base).json()
    assert c["log_entries"] == 3 and c["reply_due_on"] == "2026-11-24"
    clock.set(clock.now() + timedelta(days=2, hours=1))  # 11-22: reminder due (2 days before)
    assert tick(api) == [(c["number"], "reply reminder")]
    assert tick(api) == []
    clock.set(clock.now() + timedelta(days=3))  # 11-25: the 24th passed without a reply
    assert tick(api) == [(c["number"], "reply overdue")]
    assert api.get(base).json()["reply_overdue"] is True
    esc = api.post(
        f"{base}/escalations",
        {"step": "written_appeal", "to": "海淀区税务局", "due_on": "2026-11-27"},
    )
    assert esc.status_code == 200 and len(esc.json()["escalations"]) == 1
    clock.set(clock.now() + timedelta(days=3))
    assert tick(api) == [(c["number"], "escalation overdue")]
    clerk_queue = api.get("/v1/queues/clerk").json()
    assert clerk_queue["resolved_but_still_missing"]["count"] == 0
    done = api.post(f"{base}/resolution", {"outcome": "resolved", "text": "区局称已处理"})
    assert done.json()["invoices_still_missing"] == [inv["invoice_id"]]  # flagged
    tick(api)
    flagged = api.get("/v1/queues/clerk").json()["resolved_but_still_missing"]
    assert flagged["count"] == 1 and flagged["items"][0]["flagged"] is True
    closed = api.post(f"{base}/exchanges", exchanges[0])
    assert closed.status_code == 409
    assert "a complaint that is" in closed.json()["detail"], closed.text  # not "an invoice"

    clerk = f"key:{key_id(api, api.clerk)}"
    actors = [
        (type(e).__name__, e.actor)
        for e in api.services.ledger.events.get(UUID(c["complaint_id"]))  # type: ignore[attr-defined]
    ]
    by_people = {"Lodged", "EvidenceAdded", "ExchangeLogged", "Escalated", "Resolved"}
    by_timer = {"ReplyReminderDue", "ReplyOverdue", "EscalationOverdue"}
    assert {n for n, _ in actors} == by_people | by_timer
    assert all(a == clerk for n, a in actors if n in by_people)
    assert all(a == "system:case-timer" for n, a in actors if n in by_timer)
    assert (
        sum(
            isinstance(e, Complaint.ExchangeLogged)
            for e in api.services.ledger.events.get(UUID(c["complaint_id"]))
        )
        == 3
    )


def test_complaint_input_is_checked(api: Api) -> None:
    inv = a_missing_invoice(api)
    bad = api.post(
        "/v1/complaints", {"invoices": [inv["invoice_id"]], "channel": "pigeon", "demand": "x"}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "channel"
    empty = api.post(
        "/v1/complaints", {"invoices": [inv["invoice_id"]], "channel": "email", "demand": " "}
    )
    assert empty.json()["errors"][0]["field"] == "demand"
    assert (
        api.post(
            "/v1/complaints",
            {"invoices": [inv["invoice_id"]], "channel": "email", "demand": "x"},
            api.auditor,
        ).status_code
        == 403
    )
    c = api.post(
        "/v1/complaints", {"invoices": [inv["invoice_id"]], "channel": "email", "demand": "x"}
    ).json()
    assert api.get(f"/v1/complaints/{c['complaint_id']}", api.other).status_code == 404
    naive = api.post(
        f"/v1/complaints/{c['complaint_id']}/exchanges",
        {"at": "2026-11-20T10:00:00", "channel": "email", "said": "x"},
    )
    assert naive.status_code == 422


def test_a_review_not_decided_in_time_is_flagged_once_and_queues_show_stages(
    api: Api, clock: SettableClock
) -> None:
    reviewer, approver = api.key(SELLER, "reviewer"), api.key(SELLER, "approver")
    inv = a_missing_invoice(api)
    app = api.post(
        "/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "补录"}
    ).json()
    base = f"/v1/reentry-applications/{app['application_id']}"
    api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"remarks": "补录"}},
        headers=api.clerk,
    )
    attach(api, app["application_id"], PDF, "a.pdf")
    api.post(f"{base}/submission", {})
    tick(api)
    assert api.get("/v1/queues/reviewer", reviewer).json()["count"] == 1
    assert api.get("/v1/queues/reviewer", api.clerk).status_code == 403
    clock.set(clock.now() + timedelta(days=4))  # Tuesday: 2 working days later
    assert tick(api) == []
    clock.set(clock.now() + timedelta(days=1, hours=1))  # past Wednesday 10:00
    assert tick(api) == [(app["number"], "review overdue")]
    assert tick(api) == []
    api.post(f"{base}/review", {}, reviewer)
    tick(api)
    assert api.get("/v1/queues/reviewer", reviewer).json()["count"] == 0
    (row,) = api.get("/v1/queues/approver", approver).json()["items"]
    assert row["number"] == app["number"] and row["flagged"] is True
    overdue = [
        e
        for e in api.services.ledger.events.get(UUID(app["application_id"]))
        if isinstance(e, ReEntryApplication.ReviewOverdue)
    ]
    assert len(overdue) == 1 and overdue[0].actor == "system:case-timer"


def test_20_concurrent_exchanges_on_one_complaint_all_succeed(api: Api) -> None:
    inv = a_missing_invoice(api)
    body = {"invoices": [inv["invoice_key"]], "channel": "hotline_12366", "demand": "请核查"}
    base = f"/v1/complaints/{api.post('/v1/complaints', body).json()['complaint_id']}"
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    def log(i: int) -> None:
        barrier.wait()
        exchange = {"at": "2026-11-20T10:05:00+08:00", "channel": "hotline_12366", "said": f"{i}"}
        statuses.append(api.post(f"{base}/exchanges", exchange).status_code)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 20
    assert api.get(base).json()["log_entries"] == 20
