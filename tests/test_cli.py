"""The `fapiao` CLI as an operator runs it: a real process, real store, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from tests.builders import SELLER, a_draft, by

ROOT = Path(__file__).resolve().parents[1]


def fapiao(
    settings: Settings | str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = env or {}
    url = (
        settings
        if isinstance(settings, str)
        else settings.url.render_as_string(hide_password=False)
    )
    env = {**os.environ, "FAPIAO_DATABASE_URL": url, "COLUMNS": "200", **extra}
    if not isinstance(settings, str):
        env["FAPIAO_DATA_DIR"] = str(settings.data_dir)
        if settings.tenant_databases:
            env["FAPIAO_TENANT_DATABASES"] = json.dumps(settings.tenant_databases)
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_a_fresh_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'ledger.db'}"
    r = fapiao(url, "migrate")
    assert r.returncode == 0, r.stderr
    head = migrate.head_revision(Settings(database_url=url))
    assert f"is at migration {head}" in r.stdout
    down = fapiao(url, "migrate", "--down", "--revision", "base")
    assert down.returncode == 0 and "is at migration base" in down.stdout


def test_commands_refuse_an_unmigrated_store_in_one_line(tmp_path: Path) -> None:
    r = fapiao(f"sqlite:///{tmp_path / 'ledger.db'}", "keys", "list")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "run `fapiao migrate` first" in r.stderr


def test_keys_create_list_and_revoke(settings: Settings) -> None:
    created = fapiao(
        settings,
        "keys",
        "create",
        "--tenant",
        SELLER,
        "--roles",
        "clerk,auditor",
        "--tenant-name",
        "北京云帆",
        "--label",
        "erp",
    )
    assert created.returncode == 0, created.stderr
    secret = next(w for w in created.stdout.split() if w.startswith("fpl_"))
    key_id = secret.split("_")[1]
    services = build_services(settings)
    try:
        principal = services.keys.authenticate(secret)
        assert principal is not None and principal.tenant_id == SELLER
    finally:
        services.close()
    listed = fapiao(settings, "keys", "list")
    assert key_id in listed.stdout and "auditor,clerk" in listed.stdout
    assert secret not in listed.stdout
    assert fapiao(settings, "keys", "revoke", key_id).returncode == 0
    again = fapiao(settings, "keys", "revoke", key_id)
    assert again.returncode == 2 and again.stderr.strip() == f"error: no active key {key_id}"


def test_bad_input_is_one_readable_line(settings: Settings) -> None:
    bad_code = fapiao(
        settings, "keys", "create", "--tenant", "91110108769914581X", "--roles", "clerk"
    )
    assert bad_code.returncode == 2
    assert bad_code.stderr.strip() == (
        "error: tenant: check character is 'X', GB 32100 gives 'E' [taxpayer_code]"
    )
    bad_role = fapiao(settings, "keys", "create", "--tenant", SELLER, "--roles", "boss")
    assert bad_role.returncode == 2 and "unknown role 'boss'" in bad_role.stderr
    bad_url = fapiao("mysql://x/y", "keys", "list")
    assert bad_url.returncode == 2 and bad_url.stderr.strip().count("\n") == 0
    assert "FAPIAO_DATABASE_URL must start with" in bad_url.stderr


def test_projection_status_and_rebuild(settings: Settings) -> None:
    services = build_services(settings)
    try:
        for _ in range(3):
            services.ledger.issue_invoice(SELLER, a_draft(), by())
    finally:
        services.close()
    status = fapiao(settings, "projections", "status")
    assert status.returncode == 0 and "invoice_status" in status.stdout
    rebuilt = fapiao(settings, "projections", "rebuild", "invoice_status")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt to position 3; 0 dead letters" in rebuilt.stdout
    unknown = fapiao(settings, "projections", "rebuild", "nope")
    assert unknown.returncode == 2 and "no projection named 'nope'" in unknown.stderr


def test_serve_demo_prints_a_key_that_lists_invoices_in_every_status(tmp_path: Path) -> None:
    """Also: its logs are JSON lines under --log-format json (a missing invoice being marked
    among them) and `curl /metrics` shows every family with live values."""
    import json
    import re
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "FAPIAO_DATABASE_URL"}
    env["FAPIAO_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli.main",
            "serve",
            "--demo",
            "--port",
            str(port),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    logs: list[dict[str, object]] = []
    try:
        key = None
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := re.search(r"demo API key \(clerk, auditor\): (fpl_\S+)$", line.strip()):
                key = m.group(1)
            if line.startswith("{"):
                logs.append(json.loads(line))
            if "Uvicorn running" in str(logs[-1:]) or time.monotonic() > deadline:
                break
        assert key, "no key printed"
        marked = [r for r in logs if r["event"] == "invoice marked missing"]
        assert marked and marked[0]["level"] == "info" and marked[0]["invoice_key"]
        assert key not in str(logs)
        metrics = (
            urllib.request.urlopen(  # noqa: S310
                f"http://127.0.0.1:{port}/metrics", timeout=10
            )
            .read()
            .decode()
        )
        from tests.e2e.test_metrics import FAMILIES, parse, value

        names, samples = parse(metrics)
        assert FAMILIES <= names, FAMILIES - names
        assert value(samples, "fapiao_projection_head", projection="invoice_status") > 300
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/invoice-counts", headers={"Authorization": f"Bearer {key}"}
        )
        counts = json.loads(urllib.request.urlopen(request, timeout=10).read())  # noqa: S310
        assert counts["total"] == 300
        assert set(counts["counts"]) == {
            "issued",
            "submitted",
            "submission_failed",
            "acknowledged",
            "rejected",
            "missing",
            "voided",
            "partially_reversed",
            "reversed",
        }
        listed = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/invoices?status=missing&limit=5",
            headers={"Authorization": f"Bearer {key}"},
        )
        page = json.loads(urllib.request.urlopen(listed, timeout=10).read())  # noqa: S310
        assert len(page["items"]) == 5 and page["total"] == counts["counts"]["missing"]
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout:
            proc.stdout.close()
    assert (tmp_path / "data" / "ledger.db").exists()


def test_policy_commands(settings: Settings) -> None:
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    finally:
        services.close()
    shown = fapiao(settings, "policy", "show", "--tenant", SELLER)
    assert shown.returncode == 0 and "acknowledgement window 24 h" in shown.stdout
    assert (
        fapiao(settings, "policy", "ack-window", "--tenant", SELLER, "--hours", "36").returncode
        == 0
    )
    days = fapiao(settings, "policy", "review-days", "--tenant", SELLER, "--days", "5")
    assert days.returncode == 0 and "5 working days" in days.stdout
    added = fapiao(
        settings,
        "policy",
        "maintenance-add",
        "--tenant",
        SELLER,
        "--starts",
        "2026-11-28 22:00",
        "--ends",
        "2026-11-29 06:00",
        "--note",
        "升级",
    )
    assert added.returncode == 0, added.stderr
    assert "2026-11-28 22:00" in added.stdout and "acknowledgement window 36 h" in added.stdout
    window_id = next(w for w in added.stdout.split() if w.count("-") == 4)
    bad = fapiao(
        settings,
        "policy",
        "maintenance-add",
        "--tenant",
        SELLER,
        "--starts",
        "tomorrow",
        "--ends",
        "2026-11-29 06:00",
    )
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: starts: 'tomorrow' is not an ISO 8601 time"
    )
    gone = fapiao(settings, "policy", "maintenance-withdraw", "--tenant", SELLER, window_id)
    assert gone.returncode == 0 and window_id not in gone.stdout
    closed = fapiao(
        settings,
        "policy",
        "closure-add",
        "--tenant",
        SELLER,
        "--day",
        "2026-12-31",
        "--note",
        "年终盘点",
        "--operator",
        "wang",
    )
    assert closed.returncode == 0, closed.stderr
    assert "closed 2026-12-31 年终盘点" in closed.stdout
    assert "and 1 company closure day" in closed.stdout
    reopened = fapiao(
        settings, "policy", "closure-withdraw", "--tenant", SELLER, "--day", "2026-12-31"
    )
    assert reopened.returncode == 0 and "closed 2026-12-31" not in reopened.stdout
    bad_day = fapiao(settings, "policy", "closure-add", "--tenant", SELLER, "--day", "31/12")
    assert bad_day.returncode == 2 and "day" in bad_day.stderr
