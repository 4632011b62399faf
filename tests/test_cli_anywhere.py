"""The CLI as an operator meets it: run from any folder, against a tenant that must exist,
with periods for reconciliation, a stable demo key and exports attributed to a person."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli.demo import DEMO_KEY_FILE, load_demo_tenant
from application.demo.scenario import DEMO_TENANT
from infrastructure.bootstrap import Services, build_services
from infrastructure.monitoring.platform_export_reader import write_export
from infrastructure.settings import Settings
from tests.builders import OTHER_TENANT, SELLER
from tests.integration.test_reconciliation import a_ledger, platform_row
from tests.test_cli import ROOT, fapiao


def run_in(cwd: Path | str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_works_from_the_root_folder_with_the_users_data_folder(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FAPIAO_") and k != "XDG_DATA_HOME"
    }
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["HOME"] = str(tmp_path / "home")
    before = run_in("/", env, "keys", "list")
    assert before.returncode == 2 and before.stderr.count("\n") == 1
    assert "no ledger at" in before.stderr and "run `fapiao migrate`" in before.stderr
    migrated = run_in("/", env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    db = tmp_path / "xdg" / "fapiao-ledger" / "ledger.db"
    assert db.exists() and str(db) in migrated.stdout
    created = run_in("/", env, "keys", "create", "--tenant", SELLER, "--roles", "clerk")
    assert created.returncode == 0, created.stderr
    # The same ledger from another folder: the data folder does not depend on where we are.
    listed = run_in(tmp_path, env, "keys", "list", "--tenant", SELLER)
    assert listed.returncode == 0 and SELLER in listed.stdout
    status = run_in("/", env, "projections", "status")
    assert status.returncode == 0 and "invoice_status" in status.stdout


def test_a_relative_data_folder_is_made_absolute_at_startup(tmp_path: Path) -> None:
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        settings = Settings(data_dir=Path("rel"), database_url="sqlite:///other/ledger.db")
    finally:
        os.chdir(here)
    assert settings.data_dir == tmp_path / "rel"
    assert settings.sqlite_path == tmp_path / "other" / "ledger.db"


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "show", "--tenant", OTHER_TENANT),
        ("policy", "ack-window", "--tenant", OTHER_TENANT, "--hours", "36"),
        ("callback-secret", "--tenant", OTHER_TENANT),
        ("keys", "list", "--tenant", OTHER_TENANT),
        ("evidence", "export", "--tenant", OTHER_TENANT, "--invoice", "x", "--out", "b.zip"),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_every_command_refuses_a_tenant_that_does_not_exist(
    sqlite_settings: Settings, args: tuple[str, ...]
) -> None:
    r = fapiao(sqlite_settings, *args)
    assert r.returncode == 2, r.stdout
    assert r.stderr.strip() == (
        f"error: no tenant {OTHER_TENANT} in this ledger "
        f"(create it with `fapiao keys create --tenant {OTHER_TENANT} --roles ...`)"
    )


def test_reconcile_unknown_tenant_and_period_options(services: Services, tmp_path: Path) -> None:
    led = a_ledger(services)
    path = write_export(tmp_path / "export.csv", [platform_row(led.acked)])
    unknown = fapiao(services.settings, "reconcile", str(path), "--tenant", SELLER)
    assert unknown.returncode == 2 and f"no tenant {SELLER}" in unknown.stderr
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    half = fapiao(
        services.settings, "reconcile", str(path), "--tenant", SELLER, "--period-from", "2026-11-01"
    )
    assert half.returncode == 2
    assert half.stderr.strip() == "error: period_to: give both ends of the period, or neither"
    r = fapiao(
        services.settings,
        "reconcile",
        str(path),
        "--tenant",
        SELLER,
        "--period-from",
        "2026-11-01",
        "--period-to",
        "2026-11-30",
        "--operator",
        "wang.kuaiji",
    )
    assert r.returncode == 0, r.stderr
    assert "period 2026-11-01 to 2026-11-30" in r.stdout
    # The events the run caused carry the named operator.
    events = services.ledger.list_invoice_events(SELLER, led.ids["absent_submitted"])
    assert events[-1].type == "MarkedMissing" and events[-1].actor == "cli:wang.kuaiji"


def test_the_demo_key_is_the_same_on_every_restart_of_a_data_folder(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = []
    for _ in range(2):
        services = build_services(sqlite_settings)
        try:
            load_demo_tenant(services, "127.0.0.1", 8000)
            out = capsys.readouterr().out
            keys.append(next(w for w in out.split() if w.startswith("fpl_")))
            principal = services.keys.authenticate(keys[-1])
            assert principal is not None and principal.tenant_id == DEMO_TENANT
            assert len(services.keys.list_keys(DEMO_TENANT)) == 1
        finally:
            services.close()
    assert keys[0] == keys[1]
    kept = sqlite_settings.data_dir / DEMO_KEY_FILE
    assert kept.stat().st_mode & 0o077 == 0  # only the owner may read it


def test_cli_exports_are_attributed_to_the_operator(services: Services, tmp_path: Path) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    led = a_ledger(services)
    named = fapiao(
        services.settings,
        "evidence",
        "export",
        "--tenant",
        SELLER,
        "--invoice",
        led.acked,
        "--out",
        str(tmp_path / "a.zip"),
        "--operator",
        "li.shenji",
    )
    assert named.returncode == 0, named.stderr
    plain = fapiao(
        services.settings,
        "evidence",
        "export",
        "--tenant",
        SELLER,
        "--invoice",
        led.acked,
        "--out",
        str(tmp_path / "b.zip"),
    )
    assert plain.returncode == 0, plain.stderr
    user = os.environ.get("USER") or __import__("getpass").getuser()
    actors = [r["actor"] for r in services.access_log.list(SELLER, 10)]
    assert sorted(actors) == sorted(["cli:li.shenji", f"cli:{user}"])
    assert {r["action"] for r in services.access_log.list(SELLER, 10)} == {"evidence-export"}
