"""Policy and work-queue endpoints over HTTP, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import SELLER, issue_json
from tests.e2e.test_api import Api
from tests.fakes import SettableClock


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def test_policy_changes_show_up_in_the_overdue_queue(api: Api, clock: SettableClock) -> None:
    assert api.get("/v1/policy").json()["ack_window_hours"] == 24
    r = api.client.put("/v1/policy/ack-window", json={"hours": 12}, headers=api.clerk)
    assert r.status_code == 200 and r.json()["ack_window_hours"] == 12
    now = clock.now()
    declared = api.post(
        "/v1/policy/maintenance-windows",
        {
            "starts_at": (now + timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=4)).isoformat(),
            "note": "系统升级",
        },
    )
    assert declared.status_code == 201
    (window,) = declared.json()["maintenance_windows"]
    assert window["starts_at"].endswith("+08:00") and window["note"] == "系统升级"
    inv = api.issue()
    sub = api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    queue = api.get("/v1/queues/overdue", consistent_after=sub.json()["position"]).json()
    assert queue["total"] == 1
    (item,) = queue["items"]
    assert item["window_hours"] == 12 and item["invoice_id"] == inv["invoice_id"]
    assert (
        item["due_at"]
        == (now + timedelta(hours=15))
        .astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
        .isoformat()
    )
    gone = api.client.delete(
        f"/v1/policy/maintenance-windows/{window['window_id']}", headers=api.clerk
    )
    assert gone.status_code == 200 and gone.json()["maintenance_windows"] == []


def test_timer_marks_land_in_the_missing_queue(api: Api, clock: SettableClock) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    rejected = api.issue()
    api.post(f"/v1/invoices/{rejected['invoice_id']}/submissions", {})
    r = api.post(f"/v1/invoices/{rejected['invoice_id']}/rejections", {"reason_code": "E1"})
    api.services.wait_for("ack_timers", r.json()["position"], 5)
    clock.advance(timedelta(hours=25))
    assert api.services.ticker.tick().marked
    page = api.get(
        "/v1/queues/missing", consistent_after=api.services.ledger.recorder.max_notification_id()
    ).json()
    assert [i["invoice_id"] for i in page["items"]] == [inv["invoice_id"]]
    assert page["items"][0]["missing_detected_by"] == "timer"
    assert [i["invoice_id"] for i in api.get("/v1/queues/rejected").json()["items"]] == [
        rejected["invoice_id"]
    ]


def test_policy_input_and_roles_are_checked(api: Api) -> None:
    bad = api.post(
        "/v1/policy/maintenance-windows",
        {"starts_at": "2026-11-28T06:00:00+08:00", "ends_at": "2026-11-28T05:00:00+08:00"},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "ends_at"
    naive = api.post(
        "/v1/policy/maintenance-windows",
        {"starts_at": "2026-11-28T06:00:00", "ends_at": "2026-11-28T08:00:00"},
    )
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "starts_at"
    short = api.client.put("/v1/policy/ack-window", json={"hours": 0.001}, headers=api.clerk)
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "ack_window_hours"
    denied = api.client.put("/v1/policy/ack-window", json={"hours": 5}, headers=api.auditor)
    assert denied.status_code == 403
    missing_window = api.client.delete(
        "/v1/policy/maintenance-windows/00000000-0000-0000-0000-000000000000", headers=api.clerk
    )
    assert missing_window.status_code == 422
    assert api.get("/v1/policy", api.other).json()["maintenance_windows"] == []
    assert SELLER and issue_json()


def test_the_trend_counts_status_entries_per_beijing_day(api: Api, clock: SettableClock) -> None:
    day1 = "2026-11-18T23:30:00+08:00"
    day2 = "2026-11-19T00:30:00+08:00"  # the next Beijing day, the same UTC day
    a = api.post("/v1/invoices", issue_json(occurred_at=day1)).json()
    b = api.post("/v1/invoices", issue_json(occurred_at=day1)).json()
    api.post(f"/v1/invoices/{a['invoice_id']}/submissions", {"occurred_at": day1})
    last = api.post(f"/v1/invoices/{b['invoice_id']}/submissions", {"occurred_at": day2})
    trend = api.get(
        "/v1/queues/trend",
        since="2026-11-18",
        until="2026-11-30",
        consistent_after=last.json()["position"],
    ).json()
    assert trend == [
        {"day": "2026-11-18", "entered": {"issued": 2, "submitted": 1}},
        {"day": "2026-11-19", "entered": {"submitted": 1}},
    ]
    bad = api.get("/v1/queues/trend", since="2026-11-30", until="2026-11-01")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "until"
    assert (
        api.get("/v1/queues/trend", api.other, since="2026-11-01", until="2026-11-30").json() == []
    )
