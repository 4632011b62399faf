"""A clerk's day and an auditor's day in the console, in a real browser, with the other people
(reviewer, approver) acting with their own keys; tenant isolation, CSRF refusal and the
language switch. Screenshots of every page visited are saved under the test's tmp dir."""

from __future__ import annotations

import re
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from application.demo.scenario import DEMO_TENANT
from domain.calendar import SHANGHAI
from tests.browser.conftest import Console, shot, sign_in
from tests.builders import BUYER, SELLER
from tests.integration.test_attachments import PDF

NUMBER = "26112000000135114086"
OTHER = "26112000000135114087"


def wait_for_text(page: Any, selector: str, text: str, seconds: float = 15) -> None:
    """Reload until `selector` shows `text` (the timer and the projections run on their own)."""
    deadline = time.monotonic() + seconds
    while True:
        if text in (page.text_content(selector) or ""):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed {text!r}: {page.text_content(selector)}")
        time.sleep(0.3)
        page.reload()


def settle(console: Console, seconds: float = 30) -> None:
    """Wait until the timer has nothing due and every projection has reached the log's head
    (so a write from the test does not queue behind a burst of the server's own)."""
    services, deadline = console.services, time.monotonic() + seconds
    while services.timers.due(console.clock.now(), 1) or any(
        p["lag"] for p in services.projection_status()
    ):
        if time.monotonic() > deadline:
            raise AssertionError("the console's background work did not settle")
        time.sleep(0.2)


def issue_in_console(console: Console, page: Any, number: str, issued_on: str) -> None:
    page.goto(f"{console.base}/console/invoices/new")
    page.fill("#f-number", number)
    page.fill("input[name=issued_on]", issued_on)
    page.fill("#f-buyer-name", "杭州青禾贸易有限公司")
    page.fill("#f-buyer-code", BUYER)
    page.fill("#f-amount", "1000.00")
    page.fill("#f-tax", "130.00")
    page.fill("#f-total", "1130.00")
    page.click("#issue-submit")
    page.wait_for_url(f"**/console/invoices/{number}")


def test_a_clerks_day_from_issuing_to_re_entry(
    console: Console, open_page: Any, tmp_path: Path
) -> None:
    clerk = console.key(SELLER, "clerk", "北京云帆科技有限公司")
    reviewer = console.key(SELLER, "reviewer,approver")
    approver = console.key(SELLER, "approver")
    today = console.services.ledger.today().isoformat()

    page = open_page()
    sign_in(console, page, clerk)
    assert page.text_content("h1").startswith("工作台")
    shot(console, page, "01-dashboard-clerk")

    issue_in_console(console, page, NUMBER, today)
    assert "已开具" in page.text_content("#invoice-status")
    shot(console, page, "02-invoice-issued")
    issue_in_console(console, page, OTHER, today)

    for number in (NUMBER, OTHER):
        page.goto(f"{console.base}/console/invoices/{number}")
        page.click("#step-submit button")
        page.wait_for_selector("#flash")
        assert "已上传待确认" in page.text_content("#invoice-status")
    timeline = page.text_content("#timeline")
    assert "已上传" in timeline and "控制台" in timeline  # source: the console

    # The platform never acknowledges: past the window the timer marks it missing.
    console.clock.advance(timedelta(hours=25))
    page.goto(f"{console.base}/console/invoices/{NUMBER}")
    wait_for_text(page, "#invoice-status", "平台缺失")
    assert "定时器" in page.text_content("#timeline")
    shot(console, page, "03-invoice-missing-by-timer")

    page.goto(f"{console.base}/console/queues/missing")
    assert NUMBER in page.text_content("#queue-table")
    shot(console, page, "04-queue-missing")

    # Reconciliation: the platform's export has the other invoice, not ours.
    export = tmp_path / "platform-export.csv"
    export.write_text(
        "发票号码,开票日期,金额,税额,价税合计,发票状态\n"
        f"{OTHER},{today},1000.00,130.00,1130.00,正常\n",
        encoding="utf-8-sig",
    )
    page.goto(f"{console.base}/console/reconciliations")
    page.set_input_files("#export-file", str(export))
    page.fill("input[name=period_from]", today)
    page.fill("input[name=period_to]", today)
    page.click("#reconcile")
    page.wait_for_url(re.compile(r".*/console/reconciliations/[0-9a-f-]{36}$"))
    assert "平台无 1" in page.text_content("#class-tabs")
    assert "一致 1" in page.text_content("#class-tabs")
    assert NUMBER in page.text_content("#findings-table")
    shot(console, page, "05-reconciliation-findings")

    # 补录: open an application from the invoice, complete it, submit.
    page.goto(f"{console.base}/console/invoices/{NUMBER}")
    page.fill("#reentry-reason", "平台查询无此发票，需补录")
    page.click("#start-reentry button")
    page.wait_for_url(re.compile(r".*/console/reentry/[0-9a-f-]{36}$"))
    application = page.url
    assert "草稿" in page.text_content("#app-status")
    assert "附件" in page.text_content("#missing-items")
    page.fill(".fields-form textarea", f"buyer_code={BUYER}\ntotal=1130.00")
    page.click(".fields-form button")
    page.wait_for_selector("#flash")
    upload = tmp_path / "发票.pdf"
    upload.write_bytes(PDF)
    page.set_input_files("#attach-file", str(upload))
    page.click("#attach-form button")
    page.wait_for_selector("#complete")
    shot(console, page, "06-reentry-complete")
    page.click("#submit-form button")
    page.wait_for_selector("#flash")
    assert "待审核" in page.text_content("#app-status")
    assert page.query_selector("#review-form") is None  # a clerk never sees the decisions

    # The reviewer, with their own key: the queue, the review.
    reviewer_page = open_page()
    sign_in(console, reviewer_page, reviewer)
    reviewer_page.goto(f"{console.base}/console/queues/reviewer")
    reviewer_page.click("#open-next")
    assert reviewer_page.url == application
    assert "✔" in reviewer_page.text_content("#sod-panel")
    shot(console, reviewer_page, "07-reentry-review")
    reviewer_page.click("#review-form button")
    reviewer_page.wait_for_selector("#flash")
    # The same person may not approve what they reviewed: said before any click.
    reviewer_page.goto(application)
    assert reviewer_page.is_disabled("#approve-form button")
    assert "审核人" in reviewer_page.text_content("#approve-form .refusal")
    assert "bad" in (reviewer_page.get_attribute("#sod-panel", "class") or "")
    shot(console, reviewer_page, "08-reentry-separation-of-duties")

    approver_page = open_page()
    sign_in(console, approver_page, approver)
    approver_page.goto(f"{console.base}/console/queues/approver")
    approver_page.click("#open-next")
    assert not approver_page.is_disabled("#approve-form button")
    approver_page.click("#approve-form button")
    approver_page.wait_for_selector("#flash")
    shot(console, approver_page, "09-approver-queue-after")

    page.goto(f"{console.base}/console/invoices/{NUMBER}")
    wait_for_text(page, "#invoice-status", "已补录")
    assert "已补录" in page.text_content("#timeline")
    assert "发票.pdf" in page.text_content("#attachments")
    assert page.input_value("#step-acknowledge input[name=platform_ref]") == ""  # no default
    shot(console, page, "10-invoice-re-entered")
    page.goto(application)
    assert "已批准" in page.text_content("#app-status")


@pytest.mark.demo(60)
def test_an_auditors_read_only_day(console: Console, open_page: Any, tmp_path: Path) -> None:
    auditor = console.key(DEMO_TENANT, "auditor")
    page = open_page()
    sign_in(console, page, auditor)
    shot(console, page, "11-dashboard-auditor")
    assert page.query_selector("text=录入发票") is None

    page.goto(f"{console.base}/console/invoices?status=missing")
    first = (page.text_content("#invoice-table tr:nth-child(2) td a") or "").strip()
    assert page.query_selector("#issue-invoice") is None
    # Later a clerk records the platform's acknowledgement: as of before, it was missing.
    settle(console)
    time.sleep(1.1)  # `before` is shown to the second: keep earlier events a second earlier
    before = datetime.now(SHANGHAI).replace(microsecond=0)
    time.sleep(1.1)
    clerk = open_page()
    sign_in(console, clerk, console.key(DEMO_TENANT, "clerk"))
    clerk.goto(f"{console.base}/console/invoices/{first}")
    clerk.fill("#step-acknowledge input[name=platform_ref]", "ACK-LATE-1")
    clerk.click("#step-acknowledge button")
    clerk.wait_for_selector("#flash")
    page.click("#invoice-table tr:nth-child(2) td a")
    wait_for_text(page, "#invoice-status", "平台已确认")
    assert page.query_selector("#actions") is None and page.query_selector("#read-only")
    assert page.query_selector("form[action*='/steps/']") is None
    assert "北京时间" in (page.text_content("h2:has-text('时间线')") or "")
    shot(console, page, "12-invoice-auditor")

    page.fill("#as-of-input", before.strftime("%Y-%m-%dT%H:%M:%S"))
    page.click("#as-of-form button")
    page.wait_for_selector("#as-of-banner")
    assert "平台缺失" in (page.text_content("#as-of-status") or "")
    assert page.query_selector("tr.later")
    shot(console, page, "13-invoice-as-of")

    with page.expect_download() as download:
        page.click("#export-bundle button")
    bundle = tmp_path / "bundle.zip"
    download.value.save_as(bundle)
    assert bundle.stat().st_size > 1000

    page.goto(f"{console.base}/console/evidence")
    page.set_input_files("#bundle-file", str(bundle))
    page.click("#verify")
    page.wait_for_selector("#verify-result")
    assert page.get_attribute("#verdict", "data-verdict") == "ok-bundled-key"
    states = page.eval_on_selector_all(
        "#checks tr[data-check]", "rs => rs.map(r => r.dataset.state)"
    )
    assert states and set(states) == {"pass"}
    assert "key:" in (page.text_content("#past-exports") or "")  # the export, logged
    shot(console, page, "14-evidence-verified")

    # One event's file changed inside the bundle: it fails, and names the file.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(tampered, "w") as out:
        changed = ""
        for item in source.infolist():
            data = source.read(item)
            if not changed and "/events/" in item.filename:
                at = data.index(b'"actor":"') + len(b'"actor":"')
                flipped = b"X" if data[at : at + 1] != b"X" else b"Y"
                changed, data = item.filename, data[:at] + flipped + data[at + 1 :]
            out.writestr(item, data)
    page.set_input_files("#bundle-file", str(tampered))
    page.click("#verify")
    page.wait_for_selector("#verify-result")
    assert page.get_attribute("#verdict", "data-verdict") == "fail"
    assert page.get_attribute("tr[data-check=bagit]", "data-state") == "fail"
    assert changed.split("/", 1)[1] in (page.text_content("tr[data-check=bagit]") or "")
    shot(console, page, "15-evidence-tampered")

    for path in ("/console/queues/missing", "/console/reentry", "/console/complaints"):
        page.goto(console.base + path)
        assert page.query_selector("form[method=post]:not([action='/console/sign-out'])") is None


def test_another_tenants_records_are_not_found(console: Console, open_page: Any) -> None:
    mine = console.key(SELLER, "clerk,auditor")
    theirs = console.key("91330100716105852F", "clerk,admin", "杭州青禾贸易有限公司")
    page = open_page()
    sign_in(console, page, mine)
    issue_in_console(console, page, NUMBER, console.services.ledger.today().isoformat())
    page.click("#step-submit button")
    page.wait_for_selector("#flash")
    page.click("#step-report_missing button")
    page.wait_for_selector("#flash")
    page.fill("#reentry-reason", "平台没有")
    page.click("#start-reentry button")
    page.wait_for_url(re.compile(r".*/console/reentry/[0-9a-f-]{36}$"))
    application = page.url

    other = open_page()
    sign_in(console, other, theirs)
    for url in (f"{console.base}/console/invoices/{NUMBER}", application):
        response = other.goto(url)
        assert response is not None and response.status == 404
        assert other.text_content("#error-title") == "未找到"
    other.goto(f"{console.base}/console/invoices")
    assert NUMBER not in other.content()
    other.goto(f"{console.base}/console/reentry")
    assert "BL-" not in other.content()
    # A form posted at the other tenant's invoice is refused the same way.
    csrf = other.get_attribute("input[name=csrf]", "value")
    answer = other.request.post(
        f"{console.base}/console/invoices/{NUMBER}/steps/submit", form={"csrf": csrf or ""}
    )
    assert answer.status == 404
    shot(console, other, "16-other-tenant")


def test_a_form_without_the_sessions_csrf_token_is_refused(
    console: Console, open_page: Any
) -> None:
    clerk = console.key(SELLER, "clerk")
    page = open_page()
    sign_in(console, page, clerk)
    issue_in_console(console, page, NUMBER, console.services.ledger.today().isoformat())
    url = f"{console.base}/console/invoices/{NUMBER}/steps/submit"
    for form in ({}, {"csrf": "forged"}):
        answer = page.request.post(url, form=form, max_redirects=0)
        assert answer.status == 403
    page.reload()
    assert "已开具" in page.text_content("#invoice-status")  # nothing happened
    # And the real form still works.
    page.click("#step-submit button")
    page.wait_for_selector("#flash")
    assert "已上传待确认" in page.text_content("#invoice-status")


def test_the_language_switches_with_one_click_and_is_remembered(
    console: Console, open_page: Any
) -> None:
    clerk = console.key(SELLER, "clerk")
    page = open_page()
    sign_in(console, page, clerk)
    assert page.text_content("h1").startswith("工作台")
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.click("#switch-language")
    assert page.text_content("h1").startswith("Dashboard")
    assert page.get_attribute("html", "lang") == "en"
    shot(console, page, "17-dashboard-english")
    page.goto(f"{console.base}/console/invoices")
    assert page.text_content("h1").startswith("Invoices")
    assert "Missing" in page.text_content("#status-tabs")
    page.click("#switch-language")
    assert page.text_content("h1").startswith("发票")
    page.goto(f"{console.base}/console")
    assert page.text_content("h1").startswith("工作台")
