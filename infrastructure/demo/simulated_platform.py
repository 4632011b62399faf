"""A simulated tax platform (the first `TaxPlatform` adapter), and `fapiao demo` assembled on it.

The platform is seeded and deterministic. It accepts uploads, acknowledges them after a delay,
silently loses a configurable share, rejects a share with reason codes, refuses all work during
its maintenance windows (and answers nothing while one lasts), and writes its own export in the
real 19-column format. It also keeps the ground truth (what it lost) so a demo can check what the
ledger found. `run_demo` gives it a fresh store and a simulated clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from application.demo.scenario import SIM_NAME, SIM_TENANT, MonthSimulation, SimulationReport
from application.ports import PlatformNotice, PlatformRefusedError
from domain.calendar import SHANGHAI
from infrastructure.bootstrap import build_services
from infrastructure.clock import SimulatedClock
from infrastructure.monitoring.platform_export_reader import (
    PlatformExportReader,
    sha256_of,
    write_export,
)
from infrastructure.settings import Settings
from infrastructure.store import migrate

# Illustrative reason codes in the style vendors pass through (not an official list).
REJECTIONS = [
    ("E0203", "购方识别号校验不通过"),
    ("E1101", "金额与明细合计不符"),
    ("E0307", "商品和服务税收分类编码不存在"),
    ("E0512", "发票重复上传"),
]
INVOICE_KIND = {
    "digital_special": "数电票（增值税专用发票）",
    "digital_ordinary": "数电票（普通发票）",
}


@dataclass
class PlatformConfig:
    seed: int = 7
    loss_rate: float = 0.03
    reject_rate: float = 0.02
    ack_delay_minutes: tuple[int, int] = (2, 240)
    maintenance: list[tuple[datetime, datetime]] = field(default_factory=list)


@dataclass
class SimulatedTaxPlatform:
    config: PlatformConfig = field(default_factory=PlatformConfig)
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    refused: int = 0
    _queue: list[tuple[datetime, int, PlatformNotice]] = field(default_factory=list)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)  # noqa: S311 - a simulation, not security

    def in_maintenance(self, at: datetime) -> tuple[datetime, datetime] | None:
        return next(((a, b) for a, b in self.config.maintenance if a <= at < b), None)

    def _after_maintenance(self, at: datetime) -> datetime:
        window = self.in_maintenance(at)
        return window[1] + (at - window[0]) if window else at

    def submit(self, tenant_id: str, invoice: dict[str, Any], at: datetime) -> None:
        window = self.in_maintenance(at)
        if window:
            self.refused += 1
            raise PlatformRefusedError(
                "platform_maintenance", f"系统维护中 until {window[1].isoformat()}"
            )
        key = invoice["invoice_key"]
        draw = self.rng.random()
        delay = timedelta(minutes=self.rng.uniform(*self.config.ack_delay_minutes))
        ready = self._after_maintenance(at + delay)
        if draw < self.config.loss_rate:
            self.lost.add(key)  # accepted by the network, never seen by the platform
            return
        self._serial += 1
        if draw < self.config.loss_rate + self.config.reject_rate:
            code, message = REJECTIONS[self.rng.randrange(len(REJECTIONS))]
            self.rejected.add(key)
            notice = PlatformNotice(key, "rejected", ready, reason_code=code, message=message)
        else:
            self.held[key] = {**invoice, "tenant_id": tenant_id, "received_at": at}
            notice = PlatformNotice(
                key, "acknowledged", ready, platform_ref=f"SW{self.rng.getrandbits(40):010X}"
            )
        heapq.heappush(self._queue, (ready, self._serial, notice))

    def notices(self, until: datetime) -> list[PlatformNotice]:
        out = []
        while self._queue and self._queue[0][0] <= until:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def export(
        self,
        tenant_id: str,
        period: tuple[date, date],
        path: Path,
        file_type: str = "csv",
        encoding: str = "utf-8-sig",
    ) -> Path:
        rows = []
        held = sorted(
            (
                r
                for r in self.held.values()
                if r["tenant_id"] == tenant_id and period[0] <= r["issued_on"] <= period[1]
            ),
            key=lambda r: (r["issued_on"], r["invoice_key"]),
        )
        for n, r in enumerate(held, start=1):
            total = Decimal(r["total"])
            rows.append(
                [
                    str(n),
                    "",
                    "",
                    r["invoice_key"],
                    r["seller_code"],
                    r["seller_name"],
                    r["buyer_code"] or "",
                    r["buyer_name"],
                    f"{r['issued_on']:%Y-%m-%d} {r['received_at']:%H:%M:%S}",
                    f"{Decimal(r['amount']):,.2f}",
                    f"{Decimal(r['tax']):,.2f}",
                    f"{total:,.2f}",
                    "电子发票服务平台",
                    INVOICE_KIND.get(r["invoice_type"], r["invoice_type"]),
                    "正常",
                    "是" if total >= 0 else "否",
                    "正常",
                    "开票员",
                    "",
                ]
            )
        return write_export(path, rows, file_type, encoding)


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
    # Everything in the workdir, its signing key included (not the user's data folder).
    settings = settings or Settings(
        database_url=f"sqlite:///{workdir / 'demo.db'}", data_dir=workdir
    )
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
                PlatformExportReader(path),
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
