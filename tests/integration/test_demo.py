"""`fapiao demo`: the seed problem end to end. The ledger finds exactly the invoices the
simulated platform lost, by its timers or, failing those, by month-end reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.demo.simulated_platform import run_demo
from infrastructure.settings import Settings
from tests.test_cli import fapiao


@pytest.mark.parametrize("seed", [7, 11])
def test_the_ledger_finds_exactly_what_the_platform_lost(
    settings: Settings, tmp_path: Path, seed: int
) -> None:
    report = run_demo(tmp_path, settings, days=16, seed=seed, loss_rate=0.05)
    assert report.lost, "the platform lost nothing: the test proves nothing"
    assert set(report.missing) == report.lost
    assert set(report.missing.values()) == {"timer"}
    assert report.refused_in_maintenance > 0 and report.rejected > 0
    assert report.reconciliation is not None
    assert report.reconciliation.counts.get("absent") == len(report.lost)
    assert "mismatched" not in report.reconciliation.counts


def test_with_a_long_window_reconciliation_is_what_finds_them(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    report = run_demo(
        tmp_path, sqlite_settings, days=12, seed=3, loss_rate=0.05, ack_window_hours=60 * 24
    )
    assert report.lost and set(report.missing) == report.lost
    assert set(report.missing.values()) == {"reconciliation"}


def test_the_demo_command_prints_the_report(sqlite_settings: Settings) -> None:
    r = fapiao(sqlite_settings, "demo", "--days", "8")
    assert r.returncode == 0, r.stderr
    assert "北京的发票北京系统里没有" in r.stdout
    assert "0 false alarms" in r.stdout and "NOT FOUND" not in r.stdout
