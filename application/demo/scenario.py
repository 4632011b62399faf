"""The demo scenarios, generated from a seed so two runs tell the same story.

- The demo tenant (`fapiao serve --demo`): a Beijing software company's last two months of
  invoices, in every status.
- A month of a realistic enterprise's invoices through a lossy tax platform (`fapiao demo`;
  the seed problem, 北京的发票北京系统里没有), and a report of what the ledger found against the
  platform's own truth. Hour by hour on a simulated clock: clerks issue and upload invoices; the
  platform acknowledges, rejects, refuses work during maintenance and silently loses some; the
  ledger's timers and, at month end, reconciliation with the platform's export find the lost ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol
from uuid import UUID

from application.invoices.ledger import InvoiceLedger
from application.invoices.lifecycle import (
    AcknowledgeRequest,
    MissingReportRequest,
    RedReversalRequest,
    RejectRequest,
    SubmissionFailureRequest,
    SubmitRequest,
    VoidRequest,
)
from application.monitoring.ack_ticker import AckTimerTicker
from application.monitoring.policy_service import PolicyService
from application.monitoring.reconciliation_service import RunResult
from application.ports import PlatformRefusedError, TaxPlatform
from domain.base import Provenance, Source
from domain.calendar import SHANGHAI
from domain.invoices.identity import USCC_CHARSET, organisation_code_valid, uscc_check_character
from domain.invoices.issuance import InvoiceDraft, LineDraft, PartyDraft

DEMO_TENANT = "91110108769914581E"
DEMO_NAME = "北京云帆科技有限公司"
BUYER_NAMES = [
    "杭州青禾贸易有限公司",
    "上海澜石信息技术有限公司",
    "天津海川物流有限公司",
    "北京禾木餐饮管理有限公司",
    "深圳启明电子有限公司",
    "南京知远咨询有限公司",
    "成都锦程建设工程有限公司",
    "武汉江城医疗器械有限公司",
]
SERVICES = [
    ("*信息技术服务*软件维护", "0.06"),
    ("*计算机设备*服务器", "0.13"),
    ("*运输服务*货物运输", "0.09"),
    ("*现代服务*技术咨询", "0.06"),
    ("*电子计算机*笔记本电脑", "0.13"),
]
# Target share of each final status among the demo invoices.
PLAN = [
    ("issued", 10),
    ("submitted", 14),
    ("submission_failed", 8),
    ("acknowledged", 38),
    ("rejected", 7),
    ("missing", 11),
    ("voided", 4),
    ("partially_reversed", 4),
    ("reversed", 4),
]


def demo_uscc(rng: random.Random, region: str = "110105") -> str:
    """A made-up but well-formed code: both the GB 32100 and GB 11714 checks hold."""
    while True:
        body = (
            "91"
            + region
            + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY"[:10]) for _ in range(8))
        )
        for check in "0123456789X":
            candidate = body + check
            if all(c in USCC_CHARSET for c in candidate):
                code = candidate + uscc_check_character(candidate)
                if organisation_code_valid(code):
                    return code


def make_draft(
    rng: random.Random,
    buyers: list[tuple[str, str]],
    seller_name: str,
    seller_code: str,
    issued_on: date,
    number: str,
    paper: bool = False,
) -> InvoiceDraft:
    """A plausible one-line invoice of a Beijing IT company."""
    name, rate = rng.choice(SERVICES)
    quantity = rng.randint(1, 20)
    price = Decimal(rng.randint(50, 5000))
    amount = (price * quantity).quantize(Decimal("0.01"))
    tax = (amount * Decimal(rate)).quantize(Decimal("0.01"))
    buyer_name, buyer_code = rng.choice(buyers)
    return InvoiceDraft(
        number=number,
        code="011002600104" if paper else None,
        invoice_type="legacy_ordinary_paper"
        if paper
        else rng.choice(["digital_special", "digital_ordinary"]),
        issued_on=issued_on,
        seller=PartyDraft(seller_name, seller_code),
        buyer=PartyDraft(buyer_name, buyer_code),
        amount=str(amount),
        tax=str(tax),
        total=str(amount + tax),
        lines=(
            LineDraft(
                name, str(amount), str(tax), rate, quantity=str(quantity), unit_price=str(price)
            ),
        ),
    )


@dataclass
class DemoReport:
    invoices: int
    by_status: dict[str, int]


def load_demo(
    ledger: InvoiceLedger, tenant_id: str = DEMO_TENANT, count: int = 300, seed: int = 20261124
) -> DemoReport:
    """Issue `count` invoices and walk each to its planned status through the real commands."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    today = ledger.today()
    buyers = [(name, demo_uscc(rng)) for name in BUYER_NAMES]
    now = ledger.clock.now()
    by = Provenance("demo:clerk.wang", Source.DEMO, now)
    plan = [status for status, share in PLAN for _ in range(share)]
    drafts, targets = [], []
    for i in range(count):
        target = plan[i % len(plan)]
        issued_on = today - timedelta(days=rng.randint(0, 59))
        paper = target == "voided"
        number = (
            f"{issued_on.year % 100:02d}112{seed % 100:02d}{i:013d}" if not paper else f"{i:08d}"
        )
        drafts.append(make_draft(rng, buyers, DEMO_NAME, tenant_id, issued_on, number, paper))
        targets.append(target)
    # One batch per issue date, recorded as issued at 09:00 Beijing time on that date.
    results = []
    for day in sorted({d.issued_on for d in drafts}):
        day_by = Provenance(by.actor, by.source, datetime.combine(day, time(9), SHANGHAI))
        results += ledger.issue_invoices(
            tenant_id, [d for d in drafts if d.issued_on == day], day_by
        )
    order = {r.invoice_key: r for r in results}
    results = [order[d.number if d.code is None else f"{d.code}:{d.number}"] for d in drafts]
    for result, target, draft in zip(results, targets, drafts, strict=True):
        # Business times follow the issue date: upload the same day, answers hours later.
        start = datetime.combine(draft.issued_on, time(9), SHANGHAI) + timedelta(
            minutes=rng.randint(0, 480)
        )
        steps = iter(start + timedelta(hours=h) for h in (0, 2, 30, 50, 80))
        _walk(ledger, tenant_id, result.invoice_id, target, steps, rng)
    counts: dict[str, int] = {}
    for target in targets:
        counts[target] = counts.get(target, 0) + 1
    return DemoReport(len(results), counts)


def _walk(
    ledger: InvoiceLedger,
    tenant: str,
    iid: UUID,
    target: str,
    times: Iterator[datetime],
    rng: random.Random,
) -> None:
    now = ledger.clock.now()

    def by_() -> Provenance:
        return Provenance("demo:clerk.wang", Source.DEMO, min(next(times), now))

    if target in ("issued", "voided"):
        if target == "voided":
            ledger.change_invoice(
                tenant, iid, VoidRequest(reason="开票信息有误，已收回全部联次"), by_()
            )
        return
    ledger.change_invoice(
        tenant,
        iid,
        SubmitRequest(channel="erp-upload", batch_ref=f"B-{rng.randint(1, 40):03d}"),
        by_(),
    )
    if target == "submission_failed":
        ledger.change_invoice(
            tenant,
            iid,
            SubmissionFailureRequest(
                reason_code="network_timeout", detail="upload timed out after 30 s"
            ),
            by_(),
        )
    elif target == "rejected":
        ledger.change_invoice(
            tenant, iid, RejectRequest(reason_code="E0203", message="购方识别号校验不通过"), by_()
        )
    elif target == "missing":
        ledger.change_invoice(
            tenant,
            iid,
            MissingReportRequest(
                detected_by="person", note="not found in the platform's full invoice query"
            ),
            by_(),
        )
    elif target in ("acknowledged", "partially_reversed", "reversed"):
        ref = f"ACK-{rng.getrandbits(32):08X}"
        ledger.change_invoice(
            tenant, iid, AcknowledgeRequest(platform_ref=ref, learned_via="poll"), by_()
        )
        if target != "acknowledged":
            state = ledger.get_invoice_state(tenant, iid)
            red_key = f"{state.invoice_key[:6]}9{state.invoice_key[7:]}"
            confirmation = f"110108{rng.randint(10**13, 10**14 - 1)}"
            if target == "reversed":
                ledger.change_invoice(
                    tenant,
                    iid,
                    RedReversalRequest(
                        confirmation_number=confirmation,
                        red_invoice_key=red_key,
                        scope="full",
                        reason_code="01",
                    ),
                    by_(),
                )
            else:
                part = (state.total / 10).quantize(Decimal("0.01"))
                ledger.change_invoice(
                    tenant,
                    iid,
                    RedReversalRequest(
                        confirmation_number=confirmation,
                        red_invoice_key=red_key,
                        scope="partial",
                        reason_code="04",
                        amount=str(part),
                    ),
                    by_(),
                )


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
                    self.ledger.change_invoice(
                        tenant,
                        invoice_id,
                        AcknowledgeRequest(
                            platform_ref=notice.platform_ref,
                            acknowledged_at=notice.at,
                            learned_via="poll",
                        ),
                        by,
                    )
                    report.acknowledged += 1
                else:
                    self.ledger.change_invoice(
                        tenant,
                        invoice_id,
                        RejectRequest(reason_code=notice.reason_code, message=notice.message),
                        by,
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
        self.ledger.change_invoice(tenant, invoice_id, SubmitRequest(channel="erp-upload"), by)
        report.uploads += 1
        try:
            self.platform.submit(tenant, ids[invoice_id], at)
        except PlatformRefusedError as e:
            report.refused_in_maintenance += 1
            self.ledger.change_invoice(
                tenant,
                invoice_id,
                SubmissionFailureRequest(reason_code=e.reason_code, detail=e.detail),
                by,
            )
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
