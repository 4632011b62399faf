"""The remedies from the command line: the same roles and separation of duties as over HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

from application.invoices.lifecycle import MissingReportRequest, SubmitRequest
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, a_paper_draft, by
from tests.integration.test_attachments import MZ, PDF
from tests.test_cli import fapiao


def setup(settings: Settings) -> tuple[dict[str, str], str, str]:
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        keys = {
            role: services.keys.create_key(SELLER, role)[1]
            for role in ("clerk", "reviewer", "approver", "auditor")
        }
        invoice = services.ledger.issue_invoice(SELLER, a_draft(), by())
        services.ledger.change_invoice(
            SELLER, invoice.invoice_id, SubmitRequest(channel="erp"), by()
        )
        services.ledger.change_invoice(
            SELLER, invoice.invoice_id, MissingReportRequest(detected_by="person"), by()
        )
        paper = services.ledger.issue_invoice(SELLER, a_paper_draft(), by())
    finally:
        services.close()
    return keys, invoice.invoice_key, paper.invoice_key


def case_id(out: str) -> str:
    match = re.search(r"\(case ([0-9a-f-]{36})", out)
    assert match, out
    return match.group(1)


def test_a_reentry_application_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    keys, invoice, _ = setup(settings)
    pdf, exe = tmp_path / "发票.pdf", tmp_path / "invoice.pdf"
    pdf.write_bytes(PDF)
    exe.write_bytes(MZ)
    drafted = fapiao(
        settings,
        "reentry",
        "draft",
        "--key",
        keys["clerk"],
        "--invoice",
        invoice,
        "--reason",
        "平台无此发票",
    )
    assert drafted.returncode == 0, drafted.stderr
    assert "BL-2026-000001 drafted" in drafted.stdout
    app = case_id(drafted.stdout)
    early = fapiao(settings, "reentry", "submit", app, "--key", keys["clerk"])
    assert early.returncode == 2 and "attachments:" in early.stderr
    assert early.stderr.count("\n") == 1
    spoof = fapiao(settings, "reentry", "attach", app, str(exe), "--key", keys["clerk"])
    assert spoof.returncode == 2 and "attachment_type" in spoof.stderr
    steps = [
        ("fields", app, invoice, "--set", "remarks=补录", "--key", keys["clerk"]),
        ("attach", app, str(pdf), "--key", keys["clerk"]),
        ("submit", app, "--key", keys["clerk"]),
        ("review", app, "--key", keys["reviewer"]),
        ("approve", app, "--key", keys["approver"]),
    ]
    for step in steps:
        r = fapiao(settings, "reentry", *step)
        assert r.returncode == 0, (step, r.stderr)
    shown = json.loads(fapiao(settings, "reentry", "show", app, "--key", keys["auditor"]).stdout)
    assert shown["status"] == "approved" and shown["round"] == 1
    refused = fapiao(settings, "reentry", "draft", "--key", keys["auditor"], "--invoice", invoice)
    assert refused.returncode == 2 and "may not do this" in refused.stderr


def test_the_applicant_cannot_review_their_own_application(
    settings: Settings, tmp_path: Path
) -> None:
    _, invoice, _ = setup(settings)
    services = build_services(settings)
    try:
        both = services.keys.create_key(SELLER, "clerk,reviewer")[1]
    finally:
        services.close()
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(PDF)
    app = case_id(
        fapiao(
            settings, "reentry", "draft", "--key", both, "--invoice", invoice, "--reason", "x"
        ).stdout
    )
    for step in (
        ("fields", app, invoice, "--set", "remarks=x"),
        ("attach", app, str(pdf)),
        ("submit", app),
    ):
        assert fapiao(settings, "reentry", *step, "--key", both).returncode == 0
    own = fapiao(settings, "reentry", "review", app, "--key", both)
    assert own.returncode == 2 and "they are this case's applicant" in own.stderr


def test_a_complaint_and_a_lost_invoice_from_the_command_line(settings: Settings) -> None:
    keys, invoice, paper = setup(settings)
    lodged = fapiao(
        settings,
        "complaint",
        "lodge",
        "--key",
        keys["clerk"],
        "--invoice",
        invoice,
        "--channel",
        "hotline_12366",
        "--demand",
        "请核查",
        "--reply-due",
        "2026-11-27",
    )
    assert lodged.returncode == 0, lodged.stderr
    complaint = case_id(lodged.stdout)
    logged = fapiao(
        settings,
        "complaint",
        "exchange",
        complaint,
        "--key",
        keys["clerk"],
        "--channel",
        "hotline_12366",
        "--said",
        "已登记",
        "--at",
        "2026-11-20 10:00",
        "--promised-reply-on",
        "2026-11-26",
    )
    assert logged.returncode == 0, logged.stderr
    bad = fapiao(
        settings,
        "complaint",
        "exchange",
        complaint,
        "--key",
        keys["clerk"],
        "--channel",
        "carrier_pigeon",
        "--said",
        "x",
    )
    assert bad.returncode == 2 and "channel" in bad.stderr
    resolved = fapiao(
        settings, "complaint", "resolve", complaint, "--key", keys["clerk"], "--outcome", "resolved"
    )
    assert "resolved" in resolved.stdout
    queue = fapiao(settings, "queue", "show", "clerk", "--key", keys["clerk"])
    assert "resolved, invoices still missing: 1" in queue.stdout and "FLAGGED" in queue.stdout
    lost = fapiao(
        settings,
        "lost",
        "record",
        "--key",
        keys["clerk"],
        "--invoice",
        paper,
        "--lost-on",
        "2026-11-18",
        "--circumstances",
        "遗失",
    )
    assert lost.returncode == 0 and "LP-2026-000001 open" in lost.stdout
    closed = fapiao(
        settings,
        "lost",
        "close",
        case_id(lost.stdout),
        "--key",
        keys["clerk"],
        "--outcome",
        "abandoned",
    )
    assert "abandoned" in closed.stdout
