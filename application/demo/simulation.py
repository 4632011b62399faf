"""A month of a realistic enterprise's invoices through a lossy tax platform (the seed problem,
北京的发票北京系统里没有), and a report of what the ledger found against the platform's own truth.

Hour by hour on a simulated clock: clerks issue and upload invoices; the platform acknowledges,
rejects, refuses work during maintenance and silently loses some; the ledger's timers and, at
month end, reconciliation with the platform's export find the lost ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from uuid import UUID

from application.demo.scenario import BUYER_NAMES, demo_uscc, make_draft
from application.invoices.ledger import SHANGHAI, InvoiceLedger
from application.monitoring.ack_ticker import AckTimerTicker
from application.monitoring.policy_service import PolicyService
from application.monitoring.reconciliation_service import RunResult
from application.ports import PlatformRefusedError, TaxPlatform
from domain.base import Provenance, Source

SIM_TENANT = "91110105158813992P"
SIM_NAME = "北京晨星信息技术有限公司"


class MovableClock(Protocol):
    def now(self) -> datetime: ...

    def set(self, moment: datetime) -> None: ...


@dataclass
class SimulationReport:
    first_day: date
    days: int
    invoices: int = 0
    uploads: int = 0
    refused_in_maintenance: int = 0
    acknowledged: int = 0
    rejected: int = 0
    lost: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)  # key -> detected by
    reconciliation: RunResult | None = None

    @property
    def false_alarms(self) -> set[str]:
        return set(self.missing) - self.lost

    @property
    def undetected(self) -> set[str]:
        return self.lost - set(self.missing)


@dataclass
class MonthSimulation:
    ledger: InvoiceLedger
    policies: PolicyService
    ticker: AckTimerTicker
    platform: TaxPlatform
    clock: MovableClock
    project: Callable[[], None]
    reconcile_export: Callable[[Path], RunResult]
    lost_keys: Callable[[], set[str]]
    maintenance: list[tuple[datetime, datetime]]

    def run(
        self,
        first_day: date,
        days: int,
        workdir: Path,
        seed: int = 7,
        per_day: tuple[int, int] = (15, 35),
        tenant: str = SIM_TENANT,
        progress: Callable[[int, int], None] | None = None,
    ) -> SimulationReport:
        rng = random.Random(seed)  # noqa: S311 - a simulation
        start = datetime.combine(first_day, time(0), SHANGHAI)
        self.clock.set(start - timedelta(hours=1))
        clerk = "sim:clerk.li"
        for a, b in self.maintenance:  # the platform announced these; the clerk declared them
            self.policies.declare_maintenance(
                tenant, a, b, "电子税务局系统维护", Provenance(clerk, Source.DEMO, self.clock.now())
            )
        buyers = [(name, demo_uscc(rng, "110108")) for name in BUYER_NAMES]
        plan: list[datetime] = []
        for day in range(days):
            d = start + timedelta(days=day)
            if d.weekday() < 5:
                plan += sorted(
                    d + timedelta(hours=9, minutes=rng.randint(0, 540))
                    for _ in range(rng.randint(*per_day))
                )
        report = SimulationReport(first_day, days)
        retries: list[tuple[datetime, UUID]] = []
        ids: dict[UUID, dict[str, object]] = {}
        hours = (days + 3) * 24
        serial = 0
        for hour in range(hours):
            t0, t1 = start + timedelta(hours=hour), start + timedelta(hours=hour + 1)
            for at in [p for p in plan if t0 <= p < t1]:
                self.clock.set(at)
                serial += 1
                on = at.astimezone(SHANGHAI).date()
                draft = make_draft(
                    rng,
                    buyers,
                    SIM_NAME,
                    tenant,
                    on,
                    f"{on.year % 100:02d}112{seed % 10}{serial:014d}",
                )
                by = Provenance(clerk, Source.DEMO, at)
                issued = self.ledger.issue_invoice(tenant, draft, by)
                report.invoices += 1
                ids[issued.invoice_id] = {
                    "invoice_key": issued.invoice_key,
                    "issued_on": on,
                    "amount": draft.amount,
                    "tax": draft.tax,
                    "total": draft.total,
                    "seller_code": tenant,
                    "seller_name": SIM_NAME,
                    "buyer_code": draft.buyer.taxpayer_code,
                    "buyer_name": draft.buyer.name,
                    "invoice_type": draft.invoice_type,
                }
                self._upload(tenant, issued.invoice_id, ids, at, report, retries)
            for at, invoice_id in sorted(r for r in retries if r[0] < t1):
                retries.remove((at, invoice_id))
                self.clock.set(max(at, t0))
                self._upload(tenant, invoice_id, ids, self.clock.now(), report, retries)
            self.clock.set(t1)
            for notice in self.platform.notices(t1):
                invoice_id = next(
                    i for i, v in ids.items() if v["invoice_key"] == notice.invoice_key
                )
                by = Provenance("platform:poll", Source.DEMO, notice.at)
                if notice.kind == "acknowledged":
                    self.ledger.acknowledge_invoice(
                        tenant, invoice_id, by, notice.platform_ref, notice.at, "poll"
                    )
                    report.acknowledged += 1
                else:
                    self.ledger.reject_invoice(
                        tenant, invoice_id, by, notice.reason_code, notice.message
                    )
                    report.rejected += 1
            self.project()
            self.ticker.tick()
            if progress:
                progress(hour + 1, hours)
        last_day = first_day + timedelta(days=days - 1)
        export = self.platform.export(
            tenant, (first_day, last_day), workdir / f"platform-export-{first_day:%Y%m}.csv"
        )
        report.reconciliation = self.reconcile_export(export)
        self.project()
        report.lost = self.lost_keys()
        report.missing = self._missing(tenant, ids)
        return report

    def _upload(
        self,
        tenant: str,
        invoice_id: UUID,
        ids: dict[UUID, dict[str, object]],
        at: datetime,
        report: SimulationReport,
        retries: list[tuple[datetime, UUID]],
    ) -> None:
        by = Provenance("sim:clerk.li", Source.DEMO, at)
        self.ledger.submit_invoice(tenant, invoice_id, by, "erp-upload")
        report.uploads += 1
        try:
            self.platform.submit(tenant, ids[invoice_id], at)
        except PlatformRefusedError as e:
            report.refused_in_maintenance += 1
            self.ledger.record_submission_failure(tenant, invoice_id, by, e.reason_code, e.detail)
            end = next(b for a, b in self.maintenance if a <= at < b)
            retries.append((end + timedelta(minutes=15), invoice_id))  # re-upload after it

    def _missing(self, tenant: str, ids: dict[UUID, dict[str, object]]) -> dict[str, str]:
        found = {}
        for invoice_id, v in ids.items():
            invoice = self.ledger.get_invoice_state(tenant, invoice_id)
            if invoice.status == "missing":
                events = list(self.ledger.events.get(invoice_id, desc=True, limit=1))
                found[str(v["invoice_key"])] = getattr(events[0], "detected_by", "?")
        return found
