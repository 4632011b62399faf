"""Review deadlines over HTTP counted in China's working days, with the tenant's closure days,
shown in the case view with how they were counted; past the calendar's years it says so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.holiday_calendar import china_holidays
from tests.e2e.test_api import Api
from tests.e2e.test_complaints_api import tick
from tests.e2e.test_reentry_api import attach
from tests.fakes import SettableClock
from tests.integration.test_attachments import PDF


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def submitted_application(api: Api, issued_on: str) -> dict[str, Any]:
    inv = api.issue(issued_on=issued_on)
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {"note": "not on platform"})
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
    r = api.post(f"{base}/submission", {})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_three_working_days_after_national_day_eve_is_the_make_up_saturday(
    api: Api, clock: SettableClock
) -> None:
    clock.set(datetime(2026, 9, 30, 2, 0, tzinfo=UTC))  # Wednesday 10:00 in Beijing
    app = submitted_application(api, "2026-09-29")
    assert app["review_due_at"] == "2026-10-10T10:00:00+08:00"
    assert app["review_calendar"].startswith("China's public holidays and make-up working days")
    assert app["review_calendar_note"] == ""
    tick(api)
    clock.set(datetime(2026, 10, 9, 15, 0, tzinfo=UTC))  # Monday-Friday would be overdue
    assert tick(api) == []
    clock.set(datetime(2026, 10, 10, 2, 1, tzinfo=UTC))
    assert tick(api) == [(app["number"], "review overdue")]


def test_closure_days_move_deadlines_set_after_them(api: Api, clock: SettableClock) -> None:
    clock.set(datetime(2026, 9, 30, 2, 0, tzinfo=UTC))
    r = api.post("/v1/policy/closure-days", {"days": ["2026-10-08"], "note": "盘点"})
    assert r.status_code == 201, r.text
    policy = r.json()
    assert policy["closure_days"] == {"2026-10-08": "盘点"}
    assert policy["working_days"].endswith("and 1 company closure day")
    app = submitted_application(api, "2026-09-29")
    assert app["review_due_at"] == "2026-10-12T10:00:00+08:00"
    assert app["review_calendar"].endswith("and 1 company closure day")
    withdrawn = api.post("/v1/policy/closure-days/withdrawal", {"days": ["2026-10-08"]})
    assert withdrawn.status_code == 200 and withdrawn.json()["closure_days"] == {}
    # The deadline set before stays what it was when it was set.
    shown = api.get(f"/v1/reentry-applications/{app['application_id']}").json()
    assert shown["review_due_at"] == "2026-10-12T10:00:00+08:00"


def test_closure_days_are_checked_and_need_a_policy_writer(api: Api) -> None:
    assert api.post("/v1/policy/closure-days", {"days": []}).status_code == 422
    not_closed = api.post("/v1/policy/closure-days/withdrawal", {"days": ["2026-10-09"]})
    assert not_closed.status_code == 422
    assert not_closed.json()["errors"][0]["field"] == "days"
    refused = api.post("/v1/policy/closure-days", {"days": ["2026-10-09"]}, api.auditor)
    assert refused.status_code == 403
    # Another tenant's closure days are its own.
    api.post("/v1/policy/closure-days", {"days": ["2026-10-09"]}, api.other)
    assert api.get("/v1/policy").json()["closure_days"] == {}


def test_past_the_calendars_years_the_case_view_says_monday_to_friday(
    api: Api, clock: SettableClock
) -> None:
    last = china_holidays().last_year
    clock.set(datetime(last, 12, 30, 2, 0, tzinfo=UTC))
    app = submitted_application(api, f"{last}-12-01")
    assert app["review_calendar_note"].startswith(f"counted Monday to Friday in {last + 1}")
    shown = api.get(f"/v1/reentry-applications/{app['application_id']}").json()
    assert shown["review_calendar_note"] == app["review_calendar_note"]


def test_the_policy_says_how_working_days_are_counted(api: Api) -> None:
    policy = api.get("/v1/policy").json()
    assert policy["working_days"].startswith("China's public holidays and make-up working days")
    assert "chinese-calendar" in policy["working_days"]
