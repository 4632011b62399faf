"""A realistic demo tenant: a Beijing software company's last two months of invoices, in every
status, generated from a seed so two runs tell the same story."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from uuid import UUID

from application.invoices.ledger import SHANGHAI, InvoiceLedger
from domain.base import Provenance, Source
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
            ledger.void_invoice(tenant, iid, by_(), "开票信息有误，已收回全部联次")
        return
    ledger.submit_invoice(tenant, iid, by_(), "erp-upload", f"B-{rng.randint(1, 40):03d}")
    if target == "submission_failed":
        ledger.record_submission_failure(
            tenant, iid, by_(), "network_timeout", "upload timed out after 30 s"
        )
    elif target == "rejected":
        ledger.reject_invoice(tenant, iid, by_(), "E0203", "购方识别号校验不通过")
    elif target == "missing":
        ledger.report_missing(
            tenant, iid, by_(), "person", "not found in the platform's full invoice query"
        )
    elif target in ("acknowledged", "partially_reversed", "reversed"):
        ref = f"ACK-{rng.getrandbits(32):08X}"
        ledger.acknowledge_invoice(tenant, iid, by_(), ref, learned_via="poll")
        if target != "acknowledged":
            state = ledger.get_invoice_state(tenant, iid)
            red_key = f"{state.invoice_key[:6]}9{state.invoice_key[7:]}"
            confirmation = f"110108{rng.randint(10**13, 10**14 - 1)}"
            if target == "reversed":
                ledger.red_reverse_invoice(tenant, iid, by_(), confirmation, red_key, "full", "01")
            else:
                part = (state.total / 10).quantize(Decimal("0.01"))
                ledger.red_reverse_invoice(
                    tenant, iid, by_(), confirmation, red_key, "partial", "04", part
                )
