"""Domain-language helpers for tests: valid drafts by default, one field changed at a time."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from domain.base import Provenance, Source
from domain.invoices.issuance import InvoiceDraft, LineDraft, PartyDraft

SELLER = "91110108769914581E"
BUYER = "91330100716105852F"
OTHER_TENANT = "91320621MA1MRHG205"
_serial = itertools.count(1)


def a_number(year: int = 26) -> str:
    """A fresh, well-formed 20-digit fully digital number (Beijing, year digits match)."""
    return f"{year:02d}112000{next(_serial):012d}"


def a_draft(**changes: Any) -> InvoiceDraft:
    draft = InvoiceDraft(
        number=a_number(),
        invoice_type="digital_special",
        issued_on=date(2026, 11, 18),
        seller=PartyDraft("北京云帆科技有限公司", SELLER),
        buyer=PartyDraft("杭州青禾贸易有限公司", BUYER),
        amount="1000.00",
        tax="130.00",
        total="1130.00",
        lines=(
            LineDraft(
                "*信息技术服务*软件维护",
                "1000.00",
                "130.00",
                "0.13",
                quantity="10",
                unit_price="100",
            ),
        ),
    )
    return replace(draft, **changes)


def a_paper_draft(**changes: Any) -> InvoiceDraft:
    return a_draft(
        invoice_type="legacy_ordinary_paper",
        code="011002600104",
        number=f"{next(_serial):08d}",
        **changes,
    )


def by(actor: str = "key:test", at: datetime | None = None) -> Provenance:
    return Provenance(actor, Source.API, at or datetime(2026, 11, 20, 2, 0, tzinfo=UTC))


def issue_json(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "number": a_number(),
        "invoice_type": "digital_special",
        "issued_on": "2026-11-18",
        "seller": {"name": "北京云帆科技有限公司", "taxpayer_code": SELLER},
        "buyer": {"name": "杭州青禾贸易有限公司", "taxpayer_code": BUYER},
        "amount": "1000.00",
        "tax": "130.00",
        "total": "1130.00",
        "lines": [
            {
                "name": "*信息技术服务*软件维护",
                "amount": "1000.00",
                "tax": "130.00",
                "rate": "0.13",
                "quantity": "10",
                "unit_price": "100",
            }
        ],
    }
    body.update(changes)
    return body
