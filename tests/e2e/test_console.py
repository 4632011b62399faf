"""The console over HTTP (no browser): the session cookie's flags, expiry and revocation, the
one catalogue covering every status, event, finding class and rule in both languages, the
offline API docs, and the API friendliness found on the way (examples, keys in 404s and queues,
Beijing times)."""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.cli.demo import load_demo_tenant
from api.http.app import create_app
from api.web.i18n import CATALOGUE, Translator
from application.topics import events_of
from domain.errors import InvalidTransitionError, SeparationOfDutiesError
from domain.invoices.invoice import Invoice
from domain.invoices.status import InvoiceStatus
from domain.monitoring.reconciliation_run import CLASSES
from domain.remedies.complaint import Complaint
from domain.remedies.lost_invoice import LostInvoiceCase
from domain.remedies.reentry_application import ReEntryApplication
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import a_missing_invoice


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def sign_in(client: TestClient, key: str) -> Any:
    form = client.get("/console/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post(
        "/console/sign-in",
        data={"api_key": key, "csrf": csrf.group(1)},
        follow_redirects=False,
    )


def test_sign_in_sets_a_signed_httponly_strict_expiring_cookie(api: Api) -> None:
    key = api.services.keys.create_key(SELLER, "clerk", "")[1]
    assert (
        api.client.get("/console", follow_redirects=False)
        .headers["location"]
        .startswith("/console/sign-in")
    )
    answer = sign_in(api.client, key)
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "fapiao_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS adds it
    assert key not in cookie
    page = api.client.get("/console")
    assert page.status_code == 200 and "工作台" in page.text


def test_a_bad_key_a_forged_cookie_and_a_revoked_key_all_lead_to_sign_in(api: Api) -> None:
    key_id, key = api.services.keys.create_key(SELLER, "clerk", "")
    assert sign_in(api.client, "fpl_nope").status_code == 401
    sign_in(api.client, key)
    assert api.client.get("/console").status_code == 200
    api.client.cookies.clear()
    api.client.cookies.set("fapiao_session", "forged.value.here")
    assert api.client.get("/console", follow_redirects=False).status_code == 303
    sign_in(api.client, key)
    api.services.keys.revoke(key_id)
    moved = api.client.get("/console", follow_redirects=False)
    assert moved.status_code == 303 and "expired=1" in moved.headers["location"]


def test_the_sign_in_form_itself_needs_its_csrf_token(api: Api) -> None:
    key = api.services.keys.create_key(SELLER, "clerk", "")[1]
    api.client.get("/console/sign-in")
    answer = api.client.post("/console/sign-in", data={"api_key": key, "csrf": "guessed"})
    assert answer.status_code == 403


def test_the_catalogue_has_every_status_event_class_and_rule_in_both_languages() -> None:
    raw = tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))
    for section, entries in raw.items():
        for name, texts in entries.items():
            assert set(texts) == {"zh", "en"} and all(texts.values()), f"{section}.{name}"
    for status in InvoiceStatus:
        assert status.value in raw["status"]
    for aggregate in (Invoice, ReEntryApplication, Complaint, LostInvoiceCase):
        for event in events_of(aggregate):
            assert event.TOPIC.rsplit(".v", 1)[0] in raw["event"], event.TOPIC
    assert set(CLASSES) <= set(raw["finding"])
    zh, en = Translator("zh"), Translator("en")
    refusal = InvalidTransitionError("acknowledged", "void")
    assert zh.error(refusal)[0] == "不能对「平台已确认」状态的发票执行「作废」"
    assert en.error(refusal)[0] == "Cannot void an invoice that is Acknowledged"
    sod = SeparationOfDutiesError("key:ab12", "approve", "reviewer")
    assert "审核人" in zh.error(sod)[0] and "reviewed" in en.error(sod)[0]


def test_separation_of_duties_is_known_before_the_click(api: Api) -> None:
    inv = a_missing_invoice(api)
    app = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_key"]]}).json()
    application = api.services.reentry.get(SELLER, UUID(app["application_id"]))
    applicant = application.applicant
    assert isinstance(application.refusal("review", applicant), InvalidTransitionError)
    assert application.refusal("correct", applicant) is None
    assert isinstance(application.refusal("correct", "key:other"), SeparationOfDutiesError)
    # A draft without a reason is no dead end: the applicant restates it.
    put = api.client.put(
        f"/v1/reentry-applications/{app['application_id']}/reason",
        json={"reason": "平台查询无此发票"},
        headers=api.clerk,
    )
    assert put.status_code == 200 and put.json()["reason"] == "平台查询无此发票"
    assert "reason" not in {m["field"] for m in put.json()["missing"]}


def test_docs_and_redoc_are_served_from_this_machine(api: Api) -> None:
    for path in ("/docs", "/redoc"):
        html = api.client.get(path).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(s.startswith("/") for s in sources), sources
        for source in sources:
            if not source.endswith(".json"):
                assert api.client.get(source).status_code == 200, source


def test_every_json_and_upload_request_body_has_an_example(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for content_type, content in (
                operation.get("requestBody", {}).get("content", {}).items()
            ):
                schema = content["schema"]
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                if not (
                    schema.get("examples") or content.get("example") or content.get("examples")
                ):
                    missing.append(f"{method} {path} {content_type}")
    assert missing == []


def test_404s_and_queues_name_the_invoice_key_and_times_are_beijing(api: Api) -> None:
    missing = api.get("/v1/invoices/26112000000135119999")
    assert missing.status_code == 404 and "26112000000135119999" in missing.json()["detail"]
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_key']}/submissions", {})
    for view in ("ack_timers", "invoice_status"):
        api.services.bring_up_to_date(view)
    overdue = api.get("/v1/queues/overdue").json()
    assert overdue["items"][0]["invoice_key"] == inv["invoice_key"]
    assert overdue["items"][0]["due_at"].endswith("+08:00")
    events = api.get(f"/v1/invoices/{inv['invoice_key']}/events").json()
    assert all(e["recorded_at"].endswith("+08:00") for e in events)
    assert all(e["occurred_at"].endswith("+08:00") for e in events)
    auditor = api.key(SELLER, "auditor")
    stream = api.client.get("/v1/ledger/events", headers=auditor).text.splitlines()
    assert stream and all('"recorded_at":"' in line and "+08:00" in line for line in stream)


def test_the_session_ends_after_its_hours(api: Api) -> None:
    key = api.services.keys.create_key(SELLER, "clerk", "")[1]
    api.services.settings.session_hours = 1 / 3600  # one second
    sign_in(api.client, key)
    kept = api.client.cookies.get("fapiao_session")
    time.sleep(2.1)
    api.client.cookies.clear()
    api.client.cookies.set("fapiao_session", kept or "")  # a browser would have dropped it
    moved = api.client.get("/console", follow_redirects=False)
    assert moved.status_code == 303 and "expired=1" in moved.headers["location"]


def test_the_demo_key_printed_by_serve_opens_the_demo_dashboard_in_chinese(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    load_demo_tenant(services, "127.0.0.1", 8000)
    printed = capsys.readouterr().out
    assert "http://127.0.0.1:8000/console" in printed
    key = re.search(r"demo API key \(clerk, auditor\): (fpl_\S+)", printed)
    assert key is not None
    with TestClient(create_app(services=services)) as client:
        sign_in(client, key.group(1))
        for path in ("/console", "/console/invoices", "/console/queues/missing"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "北京云帆科技有限公司" in page.text and 'lang="zh-CN"' in page.text
        dashboard = client.get("/console").text
        assert "工作台" in dashboard and "合计 300" in dashboard
