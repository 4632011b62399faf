"""The reconciliation store's bulk paths on both stores: rows staged in chunks (COPY or
executemany) come back whole and in key order, and the database's classification sorts out
exactly the rows the domain's `compare` finds different."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from sqlalchemy import select

from application.invoices.lifecycle import (
    AcknowledgeRequest,
    MissingReportRequest,
    SubmitRequest,
    VoidRequest,
)
from application.ports import Finding
from domain.invoices.identity import parse_invoice_key
from domain.monitoring.platform_export import PlatformRow
from domain.monitoring.reconciliation_run import LedgerView, compare
from infrastructure.bootstrap import Services
from infrastructure.monitoring.reconciliation_store import SqlReconciliationStore
from infrastructure.store.tables import invoice_status, reconciliation_findings
from tests.builders import BUYER, SELLER, a_draft, a_paper_draft, by

T = SELLER
DAY = date(2026, 11, 18)
STEPS = {
    "issued": [],
    "submitted": [SubmitRequest(channel="erp")],
    "acknowledged": [SubmitRequest(channel="erp"), AcknowledgeRequest(platform_ref="A")],
    "missing": [SubmitRequest(channel="erp"), MissingReportRequest(detected_by="person")],
    "voided": [
        SubmitRequest(channel="erp"),
        AcknowledgeRequest(platform_ref="A"),
        VoidRequest(reason="开错"),
    ],
}


def exact(key: str, line: int) -> PlatformRow:
    d = Decimal
    return PlatformRow(
        line, key, DAY, d("1000.00"), d("130.00"), d("1130.00"), SELLER, BUYER, "normal", "raw"
    )


VARIANTS = {
    "same": lambda r: r,
    "amount": lambda r: r._replace(amount=r.amount + Decimal("0.01")),
    "tax": lambda r: r._replace(tax=Decimal("130.10")),
    "total": lambda r: r._replace(total=Decimal("-1130.00")),
    "day": lambda r: r._replace(issued_on=date(2026, 11, 19)),
    "seller": lambda r: r._replace(seller_code="91330100716105852F"),
    "no seller": lambda r: r._replace(seller_code=None),
    "buyer": lambda r: r._replace(buyer_code="91110108769914581E"),
    "no buyer": lambda r: r._replace(buyer_code=None),
    "voided": lambda r: r._replace(platform_status="voided"),
    "reversed": lambda r: r._replace(platform_status="reversed"),
}


def ledger_views(services: Services) -> dict[str, LedgerView]:
    c = invoice_status.c
    columns = (
        c.invoice_id,
        c.invoice_key,
        c.issued_on,
        c.amount,
        c.tax,
        c.total,
        c.seller_code,
        c.buyer_code,
        c.status,
    )
    with services.engine.connect() as conn:
        rows = conn.execute(select(*columns).where(c.tenant_id == T)).all()
    return {r.invoice_key: LedgerView(*r) for r in rows}


def test_the_database_sorts_out_exactly_the_rows_the_domain_finds_different(
    services: Services,
) -> None:
    rows: list[PlatformRow] = []
    for steps in STEPS.values():
        for change in VARIANTS.values():
            voided = any(isinstance(step, VoidRequest) for step in steps)
            draft = (a_paper_draft if voided else a_draft)(issued_on=DAY)  # paper: voidable
            invoice_id = services.ledger.issue_invoice(T, draft, by()).invoice_id
            for step in steps:
                services.ledger.change_invoice(T, invoice_id, step, by())
            key = parse_invoice_key(draft.number, draft.code).canonical
            rows.append(change(exact(key, len(rows) + 2)))
    services.bring_up_to_date("invoice_status")
    views = ledger_views(services)
    assert {v.status for v in views.values()} == set(STEPS)
    store = services.reconciliation_store
    run = uuid5(NAMESPACE_URL, "test-run")
    assert store.stage(run, iter(rows)) == len(rows)
    found = list(store.classify(run, T, "outbound", None))
    assert [c.line for c in found] == [r.line for r in sorted(rows, key=lambda r: r.invoice_key)]
    for c, row in zip(found, sorted(rows, key=lambda r: r.invoice_key), strict=True):
        view = views[row.invoice_key]
        verdict = compare(row, view)
        assert (c.kind, c.invoice_id, c.status) == (verdict.cls, view.invoice_id, view.status)
        if c.kind == "mismatched":  # with both sides, for the domain to say what differs
            assert (c.platform, c.ledger) == (row._replace(raw=""), view)
    kinds = {c.kind for c in found}
    assert kinds == {"matched", "mismatched"}


def test_rows_staged_in_many_chunks_come_back_whole_with_their_duplicates(
    services: Services,
) -> None:
    store = SqlReconciliationStore(services.engine, services.write_engine, chunk=7)
    keys = [a_draft().number for _ in range(10)]
    known = a_draft(number=keys[3], issued_on=DAY)
    services.ledger.issue_invoice(T, known, by())
    services.bring_up_to_date("invoice_status")
    rows = [exact(keys[(i * 7) % 10], i) for i in range(2, 32)]  # each key three times
    rows[5] = rows[5]._replace(issued_on=date(2026, 11, 20))  # a duplicate that differs
    run = uuid5(NAMESPACE_URL, "chunked-run")
    assert store.stage(run, iter(rows)) == 30
    found = list(store.classify(run, T, "outbound", (DAY, DAY)))
    by_key: dict[str, list[tuple[str, int | None]]] = {}
    for c in found:
        by_key.setdefault(c.invoice_key, []).append((c.kind, c.line))
    assert list(by_key) == sorted(keys)
    for key, seen in by_key.items():
        lines = sorted(r.line for r in rows if r.invoice_key == key)
        first = "matched" if key == keys[3] else "unknown"
        assert seen == [(first, lines[0]), ("duplicate", lines[1]), ("duplicate", lines[2])]
    store.clear(run)
    assert list(store.classify(run, T, "outbound", None)) == []


def test_a_ledger_invoice_the_export_lacks_comes_back_absent_only_in_its_period(
    services: Services,
) -> None:
    lacking = a_draft(issued_on=DAY)
    invoice_id = services.ledger.issue_invoice(T, lacking, by()).invoice_id
    services.ledger.change_invoice(T, invoice_id, SubmitRequest(channel="erp"), by())
    never_sent = services.ledger.issue_invoice(T, a_draft(issued_on=DAY), by()).invoice_id
    services.bring_up_to_date("invoice_status")
    store = services.reconciliation_store
    run = uuid5(NAMESPACE_URL, "absent-run")
    store.stage(run, [exact(a_draft().number, 2)])
    (absent,) = (c for c in store.classify(run, T, "outbound", (DAY, DAY)) if c.kind == "absent")
    assert (absent.invoice_key, absent.invoice_id, absent.line) == (
        lacking.number,
        invoice_id,
        None,
    )
    assert absent.ledger == ledger_views(services)[lacking.number]
    assert never_sent not in {c.invoice_id for c in store.classify(run, T, "outbound", (DAY, DAY))}
    later = (date(2026, 11, 19), date(2026, 11, 30))
    assert [c.kind for c in store.classify(run, T, "outbound", later)] == ["unknown"]
    assert [c.kind for c in store.classify(run, T, "inbound", (DAY, DAY))] == ["unknown"]


AWKWARD = [
    Finding("matched", 2, "26112000000000000001", UUID(int=7)),
    Finding(
        "invalid", 9, None, note='total: "1130,00" 有 \\ 和\t制表符\n换行\r\x01 \\N [amount_format]'
    ),
    Finding("absent", None, "011002600104:00012345", UUID(int=8), (), "MarkedMissing", 41, ""),
    Finding(
        "mismatched",
        3,
        "26112000000000000002",
        UUID(int=9),
        ({"field": "seller_code", "ledger": "A\\B\tC", "platform": "\\N 销方\n"},),
        "Acknowledged",
        2**53,
        "no event: \\ already \t acknowledged",
    ),
    Finding("unknown", 2**31 - 1, "\\N", note="on the platform, not in the ledger"),
]


def test_findings_come_back_as_they_were_written_whatever_their_text(
    services: Services,
) -> None:
    """PostgreSQL's findings go in as COPY text the store writes itself: backslashes, tabs,
    newlines and a literal \\N in any text field come back unchanged, None as None."""
    store = services.reconciliation_store
    run = uuid5(NAMESPACE_URL, "awkward-run")
    store.add_findings(run, T, 0, AWKWARD[:2])
    store.add_findings(run, T, 2, AWKWARD[2:])
    assert list(store.findings(run)) == AWKWARD
    assert [f.cls for f in store.findings(run, "absent")] == ["absent"]
    with services.engine.connect() as conn:
        c = reconciliation_findings.c
        stored = conn.execute(
            select(c.seq, c.tenant_id, c.differences).where(c.run_id == run).order_by(c.seq)
        ).all()
    assert [s.seq for s in stored] == list(range(len(AWKWARD)))
    assert {s.tenant_id for s in stored} == {T}
    assert [json.loads(s.differences) for s in stored] == [list(f.differences) for f in AWKWARD]
    assert stored[3].differences == json.dumps(list(AWKWARD[3].differences), ensure_ascii=False)
