"""The short way of `validate_draft` (everyday drafts, money in whole cents) gives what every
rule checked one by one gives: the same facts, written the same way, the same warnings in the
same order, and for a broken draft the same errors, each with its field, rule and message."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.errors import ValidationFailedError
from domain.invoices.identity import DEFAULT_REGION_CODES
from domain.invoices.issuance import (
    InvoiceDraft,
    InvoiceFacts,
    LineDraft,
    PartyDraft,
    _plain_facts,
    validate_by_rules,
    validate_draft,
)
from domain.invoices.values import DEFAULT_RATE_TABLE, EXEMPT, RateEntry, RateTable
from tests.builders import BUYER, SELLER, a_draft

TODAY = date(2026, 11, 20)

cents = st.integers(-(10**18) + 1, 10**18 - 1).map(
    lambda c: f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"
)
positive = st.integers(1, 10**17).map(lambda c: f"{c // 100}.{c % 100:02d}")
odd_money = st.sampled_from(
    ["1000", "1000.0", " 1000.00", "1e3", "1000.001", "-0.00", "0.00", "abc", "", 1000, 1000.0]
)
odd_decimals = st.one_of(
    st.sampled_from(["333.336", "0.5", "1e2", "abc", "-2", "1" * 17, "1" * 41, 2, 1.5]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
)
odd_names = st.one_of(
    st.sampled_from(["", " ", " 大米 ", "a\tb", "a\nb", "bell\x07", "\ud800", "n" * 201]),
    st.text(max_size=12),
)


def usually(draw: st.DrawFn, value: Any, odd: st.SearchStrategy[Any]) -> Any:
    """`value` most of the time, else something from `odd` (often breaking a rule)."""
    return value if draw(st.integers(0, 15)) else draw(odd)


@st.composite
def lines(draw: st.DrawFn) -> LineDraft:
    rate = draw(st.sampled_from(["0.13", "0.09", "0.06", "0.015", "0", EXEMPT, "not_taxable"]))
    rate = usually(draw, rate, st.sampled_from(["0.17", "0.16", "0.14", "0.01", "x\x00"]))
    kind = usually(draw, "normal", st.sampled_from(["discount", "discounted", "odd"]))
    sign = -1 if kind == "discount" else 1
    amount_cents = sign * usually(draw, draw(st.integers(1, 10**15)), st.integers(0, 10**17))
    whole, part = divmod(abs(amount_cents), 100)
    amount = f"{'-' if amount_cents < 0 else ''}{whole}.{part:02d}"
    if rate in (EXEMPT, "not_taxable") or not rate[0].isdigit():
        tax = "0.00"
    else:
        slack = usually(draw, draw(st.integers(-5, 5)), st.integers(-8, 8)) * Decimal("0.01")
        tax = str((Decimal(amount) * Decimal(rate)).quantize(Decimal("0.01")) + slack)
    quantity = unit_price = None
    if draw(st.booleans()):
        quantity = "1"
        unit_price = amount.lstrip("-") if sign > 0 else None
    return LineDraft(
        usually(draw, "*软件*维护", odd_names),
        usually(draw, amount, st.one_of(cents, odd_money)),
        usually(draw, tax, st.one_of(cents, odd_money)),
        rate,
        kind=kind,
        quantity=usually(draw, quantity, st.one_of(st.none(), odd_decimals)),
        unit_price=usually(draw, unit_price, st.one_of(st.none(), odd_decimals)),
        unit=usually(draw, None, st.sampled_from(["次", "bad\x00", "u" * 65])),
        tax_code=usually(draw, None, st.sampled_from(["3040201", "", 7])),
    )


def _sum(values: list[Any]) -> Any:
    try:
        return str(sum((Decimal(v) for v in values), Decimal("0.00")))
    except (ArithmeticError, TypeError, ValueError):
        return "1.00"


@st.composite
def drafts(draw: st.DrawFn) -> InvoiceDraft:
    body = draw(st.lists(lines(), max_size=3))
    amount = _sum([ln.amount for ln in body]) if body else draw(positive)
    tax_rate = None
    if body:
        tax = _sum([ln.tax for ln in body])
    else:
        tax_rate = draw(st.sampled_from(["0.13", "0.06", "exempt"]))
        tax = (
            "0.00"
            if tax_rate == "exempt"
            else str((Decimal(amount) * Decimal(tax_rate)).quantize(Decimal("0.01")))
        )
    total = _sum([amount, tax])
    return InvoiceDraft(
        number=usually(
            draw,
            "26112000000135114086",
            st.sampled_from(["25112000000000000077", "26992000000000000001", "1", "２" * 20]),
        ),
        code=usually(draw, None, st.sampled_from(["", "011002600104"])),
        invoice_type=usually(
            draw,
            "digital_special",
            st.sampled_from(["digital_ordinary", "legacy_special_paper", "x"]),
        ),
        direction=usually(draw, "outbound", st.sampled_from(["inbound", "sideways"])),
        issued_on=usually(
            draw,
            date(2026, 11, 18),
            st.sampled_from([TODAY, date(2026, 11, 21), date(2018, 3, 1), date(1999, 1, 1)]),
        ),
        seller=PartyDraft(
            usually(draw, "北京云帆科技有限公司", odd_names),
            usually(draw, SELLER, codes),
        ),
        buyer=PartyDraft(
            usually(draw, "杭州青禾贸易有限公司", odd_names),
            usually(draw, BUYER, codes),
        ),
        amount=usually(draw, amount, st.one_of(cents, odd_money)),
        tax=usually(draw, tax, st.one_of(cents, odd_money)),
        total=usually(draw, total, st.one_of(cents, odd_money)),
        tax_rate=usually(draw, tax_rate, st.sampled_from([None, "0.13", "0.14", "bad\x01"])),
        lines=tuple(body),
        remarks=usually(draw, "", st.sampled_from(["tab\tand\r\nlines", "bell \x07", "x" * 2001])),
        reverses_key=usually(draw, None, st.just("26112000000135114086")),
        replaces_key=usually(draw, None, st.sampled_from(["123", "26112000000135114086"])),
    )


codes = st.sampled_from(
    [BUYER, " 91110108769914581e ", "91110000100003662X", "91110108769914581X", "", None, 9]
)


def outcome(fn: Any, draft: InvoiceDraft, table: RateTable = DEFAULT_RATE_TABLE) -> Any:
    """What a validation gives, written out: facts' repr shows each Decimal as written."""
    try:
        facts, warnings = fn(draft, TODAY, table, DEFAULT_REGION_CODES)
    except ValidationFailedError as e:
        return ("refused", [(type(x), x.field, x.rule, x.message) for x in e.errors])
    return ("accepted", repr(facts), warnings)


def short_way_accepts(draft: InvoiceDraft, table: RateTable = DEFAULT_RATE_TABLE) -> bool:
    return _plain_facts(draft, TODAY, table, DEFAULT_REGION_CODES) is not None


@settings(max_examples=800, deadline=None)
@given(drafts())
@example(a_draft())
@example(a_draft(lines=(), tax_rate="0.13"))
@example(a_draft(lines=(), tax_rate="exempt", tax="0.00", total="1000.00"))
def test_the_short_way_gives_what_every_rule_gives(draft: InvoiceDraft) -> None:
    assert outcome(validate_draft, draft) == outcome(validate_by_rules, draft)
    if short_way_accepts(draft):
        assert outcome(validate_by_rules, draft)[0] == "accepted"
        short = _plain_facts(draft, TODAY, DEFAULT_RATE_TABLE, DEFAULT_REGION_CODES)
        assert short is not None
        same_values(short[0], validate_by_rules(draft, TODAY)[0])


def same_values(built: Any, constructed: Any) -> None:
    """`built` (its attribute dict set whole) is what the data class's __init__ makes: equal,
    with the same hash, every field set in field order and nothing else, still frozen; and so
    for the values inside it (the key, each line)."""
    assert type(built) is type(constructed)
    assert built == constructed and hash(built) == hash(constructed)
    assert list(vars(built)) == [f.name for f in fields(constructed)] == list(vars(constructed))
    with pytest.raises(FrozenInstanceError):
        built.remarks = "changed"
    if isinstance(built, InvoiceFacts):
        same_values(built.key, constructed.key)
        for mine, theirs in zip(built.lines, constructed.lines, strict=True):
            same_values(mine, theirs)


def test_everyday_drafts_take_the_short_way() -> None:
    """The shapes the benchmarks and the ERP send; the others are checked rule by rule."""
    assert short_way_accepts(a_draft())
    assert short_way_accepts(a_draft(lines=(), tax_rate="0.13"))
    assert short_way_accepts(
        a_draft(
            invoice_type="digital_ordinary",
            buyer=PartyDraft("张三", None),
            lines=(LineDraft("*农产品*大米", "500.00", "0.00", "exempt"),),
            amount="500.00",
            tax="0.00",
            total="500.00",
        )
    )
    red = a_draft(
        amount="-1000.00",
        tax="-130.00",
        total="-1130.00",
        reverses_key="26112000000135114086",
        lines=(LineDraft("x", "-1000.00", "-130.00", "0.13"),),
    )
    assert not short_way_accepts(red) and outcome(validate_draft, red)[0] == "accepted"
    assert not short_way_accepts(a_draft(amount=Decimal("1000.00")))


@settings(max_examples=500, deadline=None)
@given(
    rate=st.sampled_from(["0.1234", "2", "0.130", "-0.5", "1", "0.0005"]),
    amount=cents,
)
def test_a_tenants_own_rates_give_the_same_answers(rate: str, amount: str) -> None:
    """Rates that are not whole thousandths from 0 to 1 go the long way; the rest the short
    way, with the same answers."""
    table = RateTable((*DEFAULT_RATE_TABLE.entries, RateEntry(rate, date(2000, 1, 1), None, "t")))
    try:
        tax = str((Decimal(amount) * Decimal(rate)).quantize(Decimal("0.01")))
        total = str(Decimal(amount) + Decimal(tax))
    except ArithmeticError:
        return
    line = LineDraft("x", amount, tax, rate)
    draft = replace(a_draft(), lines=(line,), amount=amount, tax=tax, total=total)
    assert outcome(validate_draft, draft, table) == outcome(validate_by_rules, draft, table)
