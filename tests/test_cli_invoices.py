"""Invoice lifecycle steps from the command line: the same declaration, roles and rules as the
HTTP routes, one readable line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from api.http.schemas import ISSUE_EXAMPLE
from application.invoices.lifecycle import LIFECYCLE
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from tests.builders import SELLER
from tests.test_cli import fapiao


def keys(settings: Settings) -> dict[str, str]:
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        return {role: services.keys.create_key(SELLER, role)[1] for role in ("clerk", "auditor")}
    finally:
        services.close()


def test_every_lifecycle_step_is_a_command() -> None:
    names = {c.step.name.lower().replace("_", "-") for c in LIFECYCLE}
    assert names == {
        "submit",
        "fail-submission",
        "acknowledge",
        "reject",
        "mark-missing",
        "void",
        "red-reverse",
    }


def test_an_invoice_issued_submitted_and_acknowledged_from_the_command_line(
    settings: Settings, tmp_path: Path
) -> None:
    k = keys(settings)
    body = tmp_path / "invoice.json"
    body.write_text(json.dumps(ISSUE_EXAMPLE, ensure_ascii=False), encoding="utf-8")
    issued = fapiao(settings, "invoice", "issue", str(body), "--key", k["clerk"])
    assert issued.returncode == 0, issued.stderr
    key = json.loads(issued.stdout)["invoice_key"]
    assert key == ISSUE_EXAMPLE["number"]

    submitted = fapiao(
        settings, "invoice", "submit", key, "--set", "channel=erp", "--key", k["clerk"]
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["status"] == "submitted"
    acked = fapiao(
        settings,
        "invoice",
        "acknowledge",
        key,
        "--set",
        "platform_ref=ACK-9F2C11",
        "--set",
        "occurred_at=2026-11-21T09:00:00+08:00",
        "--key",
        k["clerk"],
    )
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout)["status"] == "acknowledged"
    shown = fapiao(settings, "invoice", "show", key, "--key", k["auditor"])
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert (view["status"], view["platform_ref"]) == ("acknowledged", "ACK-9F2C11")


def test_bad_steps_fail_in_one_line_and_write_nothing(settings: Settings, tmp_path: Path) -> None:
    k = keys(settings)
    body = tmp_path / "invoice.json"
    body.write_text(json.dumps(ISSUE_EXAMPLE, ensure_ascii=False), encoding="utf-8")
    assert fapiao(settings, "invoice", "issue", str(body), "--key", k["clerk"]).returncode == 0
    key = ISSUE_EXAMPLE["number"]

    missing_field = fapiao(settings, "invoice", "reject", key, "--key", k["clerk"])
    assert missing_field.returncode == 2
    assert "reason_code: Field required" in missing_field.stderr
    assert missing_field.stderr.strip().count("\n") == 0

    unknown = fapiao(settings, "invoice", "submit", key, "--set", "colour=red", "--key", k["clerk"])
    assert unknown.returncode == 2 and "colour: Extra inputs are not permitted" in unknown.stderr

    not_yet = fapiao(
        settings, "invoice", "acknowledge", key, "--set", "platform_ref=A", "--key", k["clerk"]
    )
    assert not_yet.returncode == 2 and "issued" in not_yet.stderr

    read_only = fapiao(settings, "invoice", "submit", key, "--key", k["auditor"])
    assert read_only.returncode == 2 and "role" in read_only.stderr

    shown = json.loads(fapiao(settings, "invoice", "show", key, "--key", k["auditor"]).stdout)
    assert (shown["status"], shown["version"]) == ("issued", 1)
