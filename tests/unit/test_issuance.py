"""Every validation rule of a new invoice, each with the field and rule code it reports."""

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationFailedError
from domain.invoices.issuance import LineDraft, PartyDraft, validate_draft
from domain.invoices.values import CENT, money
from tests.builders import BUYER, SELLER, a_draft

TODAY = date(2026, 11, 20)
LINE = LineDraft("*软件*维护", "1000.00", "130.00", "0.13")

# (what changes, the field reported, the rule reported): one row per rule.
RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"number": "2.5112E+19"}, "number", "invoice_key"),
    ({"number": "26112000"}, "number", "invoice_key"),
    ({"code": "01100260011", "number": "00000001"}, "code", "invoice_key"),
    ({"invoice_type": "vat_magic"}, "invoice_type", "enum"),
    ({"direction": "sideways"}, "direction", "enum"),
    ({"invoice_type": "legacy_special_paper"}, "code", "type_key_mismatch"),
    ({"issued_on": date(2026, 11, 21)}, "issued_on", "issue_date_in_future"),
    (
        {"seller": PartyDraft("北京云帆", "91110108769914581X")},
        "seller.taxpayer_code",
        "taxpayer_code",
    ),
    ({"seller": PartyDraft("北京云帆", None)}, "seller.taxpayer_code", "required"),
    ({"seller": PartyDraft(" ", SELLER)}, "seller.name", "required"),
    ({"buyer": PartyDraft("张三", None)}, "buyer.taxpayer_code", "required_for_special"),
    ({"buyer": PartyDraft("乙", "9133010071610585")}, "buyer.taxpayer_code", "taxpayer_code"),
    ({"amount": 1000.0}, "amount", "money_format"),
    ({"tax": "130.001"}, "tax", "money_format"),
    ({"total": "abc"}, "total", "money_format"),
    ({"total": "1130.01"}, "total", "total_mismatch"),
    (
        {
            "amount": "-1000.00",
            "tax": "-130.00",
            "total": "-1130.00",
            "lines": (LineDraft("x", "-1000.00", "-130.00", "0.13"),),
        },
        "total",
        "total_sign",
    ),
    (
        {
            "lines": (LineDraft("x", "1000.00", "130.07", "0.13"),),
            "tax": "130.07",
            "total": "1130.07",
        },
        "lines[0].tax",
        "tax_tolerance",
    ),
    ({"lines": (LineDraft("x", "1000.00", "130.00", "0.17"),)}, "lines[0].rate", "tax_rate_date"),
    ({"lines": (LineDraft("x", "1000.00", "130.00", "0.14"),)}, "lines[0].rate", "tax_rate"),
    ({"lines": (LineDraft("", "1000.00", "130.00", "0.13"),)}, "lines[0].name", "required"),
    (
        {"lines": (LineDraft("x", "1000.00", "130.00", "0.13", kind="odd"),)},
        "lines[0].kind",
        "enum",
    ),
    (
        {
            "lines": (
                LineDraft("x", "1000.00", "130.00", "0.13", quantity="3", unit_price="333.00"),
            )
        },
        "lines[0].amount",
        "quantity_price",
    ),
    (
        {"lines": (LineDraft("x", "1000.00", "130.00", "0.13", quantity=1.5, unit_price="100"),)},
        "lines[0].quantity",
        "decimal_format",
    ),
    (
        {"lines": (LineDraft("x", "1000.00", "130.00", "0.13", kind="discount"),)},
        "lines[0].amount",
        "line_sign",
    ),
    (
        {
            "lines": (LineDraft("x", "1000.00", "10.00", "exempt"),),
            "tax": "10.00",
            "total": "1010.00",
        },
        "lines[0].tax",
        "tax_tolerance",
    ),
    ({"lines": (LineDraft("x", "900.00", "117.00", "0.13"),)}, "amount", "line_sum"),
    ({"lines": (LineDraft("x", "1000.00", "129.95", "0.13"),)}, "tax", "line_sum"),
    ({"lines": (), "tax_rate": None}, "tax_rate", "required"),
    (
        {"lines": (), "tax_rate": "0.13", "tax": "128.00", "total": "1128.00"},
        "tax",
        "tax_tolerance",
    ),
    (
        {
            "lines": tuple(LineDraft(f"l{i}", "100.00", "13.06", "0.13") for i in range(22)),
            "amount": "2200.00",
            "tax": "287.32",
            "total": "2487.32",
        },
        "tax",
        "tax_tolerance_total",
    ),
    (
        {
            "reverses_key": "123",
            "amount": "-1000.00",
            "tax": "-130.00",
            "total": "-1130.00",
            "lines": (LineDraft("x", "-1000.00", "-130.00", "0.13"),),
        },
        "reverses_key",
        "invoice_key",
    ),
    ({"replaces_key": "2.6E+19"}, "replaces_key", "invoice_key"),
]


@pytest.mark.parametrize("changes,field,rule", RULES, ids=[f"{f}:{r}" for _, f, r in RULES])
def test_each_rule_names_its_field_and_rule(changes: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(ValidationFailedError) as e:
        validate_draft(a_draft(**changes), TODAY)
    assert (field, rule) in [(err.field, err.rule) for err in e.value.errors], e.value


def test_every_broken_rule_is_reported_at_once() -> None:
    draft = a_draft(number="1", total="9.99", seller=PartyDraft("", None))
    with pytest.raises(ValidationFailedError) as e:
        validate_draft(draft, TODAY)
    fields = {err.field for err in e.value.errors}
    assert {"number", "total", "seller.name", "seller.taxpayer_code"} <= fields


def test_a_valid_invoice_is_accepted_with_amounts_as_stated() -> None:
    facts, warnings = validate_draft(a_draft(), TODAY)
    assert facts.total == Decimal("1130.00") and facts.total.as_tuple().exponent == -2
    assert warnings == []


def test_tolerances_accept_what_the_platform_accepts() -> None:
    line = LineDraft("x", "1000.00", "130.06", "0.13", quantity="3", unit_price="333.336")
    facts, _ = validate_draft(a_draft(lines=(line,), tax="130.06", total="1130.06"), TODAY)
    assert facts.lines[0].tax == Decimal("130.06")


def test_discount_lines_are_allowed_on_blue_invoices() -> None:
    lines = (
        LineDraft("*软件*维护", "1100.00", "143.00", "0.13", kind="discounted"),
        LineDraft("*软件*维护", "-100.00", "-13.00", "0.13", kind="discount"),
    )
    facts, _ = validate_draft(a_draft(lines=lines), TODAY)
    assert [ln.kind.value for ln in facts.lines] == ["discounted", "discount"]


def test_an_individual_buyer_needs_no_code_on_an_ordinary_invoice() -> None:
    facts, _ = validate_draft(
        a_draft(invoice_type="digital_ordinary", buyer=PartyDraft("张三", None)), TODAY
    )
    assert facts.buyer_code is None


def test_exempt_and_dated_rates_come_from_the_table() -> None:
    exempt = (LineDraft("*农产品*大米", "500.00", "0.00", "exempt"),)
    validate_draft(
        a_draft(
            invoice_type="digital_ordinary",
            lines=exempt,
            amount="500.00",
            tax="0.00",
            total="500.00",
        ),
        TODAY,
    )
    old = replace(
        a_draft(number="18112000000000000001"),
        issued_on=date(2018, 3, 1),
        lines=(LineDraft("x", "1000.00", "170.00", "0.17"),),
        tax="170.00",
        total="1170.00",
    )
    validate_draft(old, TODAY)


def test_a_red_letter_invoice_is_negative_and_names_what_it_reverses() -> None:
    facts, _ = validate_draft(
        a_draft(
            amount="-1000.00",
            tax="-130.00",
            total="-1130.00",
            reverses_key="26112000000135114086",
            lines=(LineDraft("x", "-1000.00", "-130.00", "0.13"),),
        ),
        TODAY,
    )
    assert facts.reverses_key == "26112000000135114086"


def test_softer_rules_return_warnings() -> None:
    _, warnings = validate_draft(
        a_draft(number="25112000000000000077", buyer=PartyDraft("乙", "91110000100003662X")), TODAY
    )
    assert {w.rule for w in warnings} == {"number_year", "organisation_code"}


def test_a_legacy_code_whose_kind_disagrees_with_the_type_is_a_warning() -> None:
    _, warnings = validate_draft(
        a_draft(invoice_type="legacy_special_paper", code="011002600104", number="00000001"), TODAY
    )
    assert [w.rule for w in warnings] == ["code_kind"]


def test_seller_code_is_normalised() -> None:
    facts, _ = validate_draft(a_draft(seller=PartyDraft("甲", " 91110108769914581e ")), TODAY)
    assert facts.seller_code == SELLER and facts.buyer_code == BUYER


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"remarks": "tab\tand\r\nlines are fine"}, []),
        ({"remarks": "bell \x07"}, [("remarks", "control_characters")]),
        ({"remarks": "x" * 2001}, [("remarks", "max_length")]),
        (
            {"seller": PartyDraft("北京\n云帆", SELLER), "buyer": PartyDraft("杭州\ud800", BUYER)},
            [("seller.name", "control_characters"), ("buyer.name", "encoding")],
        ),
        (
            {"lines": (LineDraft("软件\x1b维护", "1000.00", "130.00", "0.13"),)},
            [("lines[0].name", "control_characters")],
        ),
    ],
)
def test_every_text_that_breaks_a_bound_is_named(
    changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    """One search over all the texts lets a clean draft through; any offence is still reported
    field by field, each with its rule."""
    draft = a_draft(**changes)
    if not expected:
        assert validate_draft(draft, TODAY)[0].remarks == draft.remarks
        return
    with pytest.raises(ValidationFailedError) as e:
        validate_draft(draft, TODAY)
    found = [(err.field, err.rule) for err in e.value.errors]
    assert [
        f for f in found if f[1] in ("control_characters", "max_length", "encoding")
    ] == expected


@given(st.from_regex(r"-?[0-9]{1,16}\.[0-9]{2}", fullmatch=True))
def test_money_in_plain_cents_is_what_the_full_rules_give(text: str) -> None:
    """The short way for `"1000.00"`-like text: the same Decimal, written the same way."""
    full = Decimal(text).quantize(CENT)
    assert str(money("amount", text)) == str(full) and money("amount", f" {text} ") == full
