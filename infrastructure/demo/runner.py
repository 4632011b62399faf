"""Assembles `fapiao demo`: a fresh store, a simulated clock and a lossy simulated platform."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from application.demo.simulation import SIM_NAME, SIM_TENANT, MonthSimulation, SimulationReport
from application.invoices.ledger import SHANGHAI
from infrastructure.bootstrap import build_services
from infrastructure.clock import SimulatedClock
from infrastructure.demo.simulated_platform import PlatformConfig, SimulatedTaxPlatform
from infrastructure.monitoring.platform_export_reader import ExportReader, sha256_of
from infrastructure.settings import Settings
from infrastructure.store import migrate

FIRST_DAY = date(2026, 10, 1)


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


# Announced windows: a night-time upgrade, an afternoon outage, a lunchtime patch.
MAINTENANCE = [
    (beijing("2026-10-09 22:00"), beijing("2026-10-10 06:00")),
    (beijing("2026-10-15 13:00"), beijing("2026-10-15 17:00")),
    (beijing("2026-10-22 12:00"), beijing("2026-10-22 14:00")),
]


def run_demo(
    workdir: Path,
    settings: Settings | None = None,
    days: int = 30,
    seed: int = 7,
    loss_rate: float = 0.03,
    reject_rate: float = 0.02,
    progress: Callable[[int, int], None] | None = None,
    ack_window_hours: float | None = None,
) -> SimulationReport:
    """Simulate a month on a fresh SQLite store in `workdir` (or the given settings' store)."""
    settings = settings or Settings(database_url=f"sqlite:///{workdir / 'demo.db'}")
    migrate.upgrade(settings)
    clock = SimulatedClock()
    services = build_services(settings, clock)
    try:
        services.keys.ensure_tenant(SIM_TENANT, SIM_NAME)
        if ack_window_hours is not None:
            from datetime import timedelta

            from domain.base import Provenance, Source

            services.policies.set_ack_window(
                SIM_TENANT,
                timedelta(hours=ack_window_hours),
                Provenance("sim:admin", Source.DEMO, clock.now()),
            )
        maintenance = [w for w in MAINTENANCE if w[0].date() < FIRST_DAY.replace(day=days)]
        platform = SimulatedTaxPlatform(
            PlatformConfig(
                seed=seed, loss_rate=loss_rate, reject_rate=reject_rate, maintenance=maintenance
            )
        )

        def project() -> None:
            for worker in services.workers.values():
                worker.catch_up()

        def reconcile(path: Path) -> object:
            from domain.base import Provenance, Source

            return services.reconciliation.reconcile(
                SIM_TENANT,
                ExportReader(path),
                sha256_of(path),
                path.name,
                Provenance("sim:clerk.li", Source.RECONCILIATION, clock.now()),
            )

        simulation = MonthSimulation(
            services.ledger,
            services.policies,
            services.ticker,
            platform,
            clock,
            project,
            reconcile,
            lambda: set(platform.lost),
            maintenance,
        )  # type: ignore[arg-type]
        return simulation.run(FIRST_DAY, days, workdir, seed=seed, progress=progress)
    finally:
        services.close()
