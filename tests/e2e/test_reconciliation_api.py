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
