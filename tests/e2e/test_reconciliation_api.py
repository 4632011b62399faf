"""Reconciliation over HTTP (multipart upload, findings as JSON and CSV) and from the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import write_export
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.integration.test_reconciliation import a_ledger, export_for, platform_row
from tests.test_cli import fapiao


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def upload(api: Api, path: Path, headers: dict[str, str] | None = None, **form: str) -> object:
    with path.open("rb") as f:
        return api.client.post(
            "/v1/reconciliations",
            files={"file": (path.name, f)},
            data=form,
            headers=headers or api.clerk,
        )


def test_upload_reconcile_and_read_findings(api: Api, tmp_path: Path) -> None:
    led = a_ledger(api.services)
    path = write_export(tmp_path / "导出.xlsx", export_for(led, "26112000009999999999"), "xlsx")
    r = upload(api, path)
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    run = r.json()  # type: ignore[attr-defined]
    assert run["counts"]["absent"] == 2 and run["replayed"] is False
    again = upload(api, path).json()  # type: ignore[attr-defined]
    assert again["replayed"] is True and again["run_id"] == run["run_id"]
    findings = api.get(run["findings_url"]).json()
    assert len(findings) == sum(run["counts"].values())
    assert {f["cls"] for f in findings} == set(run["counts"])
    csv_text = api.get(run["findings_url"], format="csv").text
    assert csv_text.startswith("\ufeffclass,line,invoice_key") and "mismatched" in csv_text
    only = api.get(run["findings_url"], **{"class": "absent"}).json()
    assert {f["invoice_key"] for f in only} == {led.absent_submitted, led.absent_acked}
    queue = api.get("/v1/queues/mismatched").json()
    assert queue["total"] == 2
    assert api.get(f"/v1/reconciliations/{run['run_id']}", api.other).status_code == 404
    assert api.get(run["findings_url"], api.other).status_code == 404


def test_bad_uploads_are_422_and_record_nothing(api: Api, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    r = upload(api, empty)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"  # type: ignore[attr-defined]
    cols = write_export(tmp_path / "cols.csv", [["x"]], header=["发票号码", "价税合计"])
    r = upload(api, cols)
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert "missing required columns" in r.json()["detail"]  # type: ignore[attr-defined]
    bad_map = upload(api, cols, columns="[1]")
    assert bad_map.json()["errors"][0]["field"] == "columns"  # type: ignore[attr-defined]
    assert upload(api, cols, api.auditor).status_code == 403  # type: ignore[attr-defined]


def test_the_cli_reconciles_with_a_progress_bar_and_writes_findings(
    services: Services, tmp_path: Path
) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    led = a_ledger(services)
    path = write_export(tmp_path / "export.csv", [platform_row(led.acked)], encoding="gb18030")
    out = tmp_path / "findings.csv"
    r = fapiao(
        services.settings, "reconcile", str(path), "--tenant", SELLER, "--findings", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert "matched" in r.stdout and "events caused" in r.stdout
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    # header, 1 matched, 6 believed-uploaded invoices absent (one of them already missing)
    assert len(lines) == 8 and sum(ln.startswith("absent,") for ln in lines) == 6
    again = fapiao(services.settings, "reconcile", str(path), "--tenant", SELLER)
    assert "nothing changed" in again.stdout
    bad = fapiao(
        services.settings, "reconcile", str(path), "--tenant", SELLER, "--encoding", "klingon"
    )
    assert (
        bad.returncode == 2
        and bad.stderr.strip() == "error: encoding: 'klingon' is not an encoding"
    )


def _last_event(services: Services) -> int:
    return services.ledger.recorder.max_notification_id() or 0


def test_out_of_bounds_form_fields_are_422_naming_field_and_rule_and_write_nothing(
    api: Api, tmp_path: Path
) -> None:
    led = a_ledger(api.services)
    path = write_export(tmp_path / "export.csv", [platform_row(led.acked)])
    before = _last_event(api.services)
    cases = [
        ({"period_from": "0001-01-01", "period_to": "9999-12-31"}, "period_from", "date_range"),
        ({"period_from": "2026-11-01", "period_to": "9999-12-31"}, "period_to", "date_range"),
        ({"period_from": "2026-11-30", "period_to": "2026-11-01"}, "period_to", "period_order"),
        ({"encoding": "\x00"}, "encoding", "control_characters"),
        ({"encoding": "utf-8\x00"}, "encoding", "control_characters"),
        ({"columns": "[" * 5000}, "columns", "json"),
        ({"columns": '{"a": {"b": 1}}'}, "columns", "json"),
        ({"columns": "{" + " " * 20_000 + "}"}, "columns", "max_length"),
    ]
    for form, field, rule in cases:
        r = upload(api, path, api.key(SELLER, "admin"), **form)
        assert r.status_code == 422, (form, r.text)  # type: ignore[attr-defined]
        assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
        error = r.json()["errors"][0]  # type: ignore[attr-defined]
        assert (error["field"], error["rule"]) == (field, rule), form
    assert _last_event(api.services) == before
    ok = upload(
        api, path, api.key(SELLER, "admin"), period_from="2026-11-01", period_to="2026-11-30"
    )
    assert ok.status_code == 201 and ok.json()["replayed"] is False  # type: ignore[attr-defined]


def test_out_of_bounds_row_values_are_invalid_rows_never_a_500(api: Api, tmp_path: Path) -> None:
    bad = [
        ("1e30", "0", "1e30", "2026-11-20", "amount", "money_range"),
        ("99999999999999999999.00", "0", "1.00", "2026-11-20", "amount", "money_range"),
        ("1.00", "0", "-99999999999999999.99", "2026-11-20", "total", "money_range"),
        ("1.00", "0", "1.00", "9999-12-31", "issued_on", "date_range"),
        ("1.00", "0", "1.00", "1900-01-01", "issued_on", "date_range"),
    ]
    path = tmp_path / "bounds.csv"
    lines = ["发票号码,开票日期,金额,税额,价税合计"]
    for i, (amount, tax, total, day, _, _) in enumerate(bad):
        lines.append(f"2611200000999999999{i},{day},{amount},{tax},{total}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = upload(api, path, api.key(SELLER, "admin"))
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    run = r.json()  # type: ignore[attr-defined]
    assert run["counts"] == {"invalid": len(bad)} and run["events_caused"] == 0
    findings = sorted(api.get(run["findings_url"]).json(), key=lambda f: f["line"])
    for f, (*_, field, rule) in zip(findings, bad, strict=True):
        assert f["note"].startswith(f"{field}:") and f"[{rule}]" in f["note"], f


def test_the_cli_refuses_a_period_outside_the_window_in_one_line(
    services: Services, tmp_path: Path
) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    path = write_export(tmp_path / "export.csv", [platform_row("26112000009999999999")])
    for first, last in (("0001-01-01", "9999-12-31"), ("2026-11-30", "2026-11-01")):
        r = fapiao(
            services.settings, "reconcile", str(path), "--tenant", SELLER,
            "--period-from", first, "--period-to", last,
        )  # fmt: skip
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
        assert r.stderr.startswith("error: period_"), r.stderr
