from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidInvoiceKeyError, InvalidTaxpayerCodeError
from domain.invoices.identity import (
    DEFAULT_REGION_CODES,
    USCC_CHARSET,
    invoice_id,
    key_warnings,
    parse_canonical_key,
    parse_invoice_key,
    parse_uscc,
    uscc_check_character,
)


@pytest.mark.parametrize(
    "code",
    [
        "91330100716105852F",
        "91110108769914581E",
        "91320621MA1MRHG205",
        "91110000600037341L",
        "914403001922038216",
        " 9111-0108 7699 1458 1e ",
    ],
)
def test_valid_unified_social_credit_codes_pass_both_checks(code: str) -> None:
    normalised, warnings = parse_uscc("seller.taxpayer_code", code)
    assert len(normalised) == 18 and warnings == []


def test_a_wrong_check_character_is_refused_naming_the_expected_one() -> None:
    with pytest.raises(InvalidTaxpayerCodeError) as e:
        parse_uscc("buyer.taxpayer_code", "91320621MA1MRHG207")
    assert e.value.field == "buyer.taxpayer_code" and e.value.rule == "taxpayer_code"
    assert "'5'" in e.value.message


def test_a_failing_embedded_organisation_code_is_only_a_warning() -> None:
    code, warnings = parse_uscc("seller.taxpayer_code", "91110000100003662X")
    assert code == "91110000100003662X"
    assert [w.rule for w in warnings] == ["organisation_code"]


@pytest.mark.parametrize(
    "bad,why", [("9111010876991458", "18 characters"), ("9111010876991458IE", "not allowed")]
)
def test_malformed_codes_are_refused(bad: str, why: str) -> None:
    with pytest.raises(InvalidTaxpayerCodeError, match=why):
        parse_uscc("seller.taxpayer_code", bad)


def test_codes_may_start_with_a_letter() -> None:
    from domain.invoices.identity import uscc_check_character

    body = "Y1110000" + "MA01ABCD" + "0"
    code = body + uscc_check_character(body)
    assert parse_uscc("seller.taxpayer_code", code)[0] == code


def test_fully_digital_and_legacy_keys_have_their_canonical_forms() -> None:
    assert parse_invoice_key("24112000000135114086", None).canonical == "24112000000135114086"
    assert parse_invoice_key("00012345", "011002600104").canonical == "011002600104:00012345"
    assert parse_canonical_key("011002600104:00012345").code == "011002600104"


@pytest.mark.parametrize(
    "number,code,field,message",
    [
        ("2.5112E+19", None, "number", "scientific notation"),
        ("２４112000000135114086", None, "number", "ASCII digits"),
        ("4112000000135114086", None, "number", "20 digits"),
        ("12345678", "11002600104", "code", "10 or 12"),
        ("1234567", "011002600104", "number", "8 digits"),
        (24112000000135114086, None, "number", "not a number"),
    ],
)
def test_keys_that_lost_information_are_refused(
    number: object, code: str | None, field: str, message: str
) -> None:
    with pytest.raises(InvalidInvoiceKeyError, match=message) as e:
        parse_invoice_key(number, code)  # type: ignore[arg-type]
    assert e.value.field == field


def test_year_and_region_digits_are_warnings() -> None:
    key = parse_invoice_key("25992000000135114086", None)
    rules = [w.rule for w in key_warnings(key, date(2026, 1, 5), DEFAULT_REGION_CODES)]
    assert rules == ["number_year", "number_region"]


def test_invoice_ids_are_stable_per_tenant_and_differ_across_tenants() -> None:
    key = parse_invoice_key("24112000000135114086", None)
    assert invoice_id("A", key) == invoice_id("A", key) != invoice_id("B", key)


def test_invoice_ids_never_change() -> None:
    """Stored streams are named by these ids: the same inputs give the ids they always gave."""
    assert str(invoice_id("91110108769914581E", parse_canonical_key("26112000000000000001"))) == (
        "3d2b66c1-d15d-5263-bea3-e22eeb57609a"
    )
    assert str(invoice_id("T1", parse_canonical_key("011002400111:12345678"))) == (
        "54ee67a1-8517-5bd7-b1c6-b8f3e93ac7de"
    )


@settings(max_examples=300)
@given(tenant=st.text(max_size=40), number=st.from_regex(r"[0-9]{20}", fullmatch=True))
def test_invoice_id_is_uuid5_of_the_tenant_and_key(tenant: str, number: str) -> None:
    from uuid import uuid5

    from domain.invoices.identity import INVOICE_NAMESPACE

    key = parse_invoice_key(number, None)
    found = invoice_id(tenant, key)
    assert found == uuid5(INVOICE_NAMESPACE, f"{tenant}|{key.canonical}")
    assert (found.version, found.variant) == (5, "specified in RFC 4122")


# ---- the fast checks give the character-by-character answers (batch issuance, issue 15) ----


def _first_control(value: str, multiline: bool) -> str | None:
    allowed = {"\t", "\n", "\r"} if multiline else {"\t"}
    return next((c for c in value if (ord(c) < 0x20 or ord(c) == 0x7F) and c not in allowed), None)


@settings(max_examples=400)
@given(value=st.text(st.characters(max_codepoint=0xFFFF), max_size=40), multiline=st.booleans())
def test_control_and_surrogate_checks_find_the_first_offender(value: str, multiline: bool) -> None:
    from domain.bounds import control_character, lone_surrogate

    assert control_character(value, multiline) == _first_control(value, multiline)
    assert lone_surrogate(value) == next((c for c in value if 0xD800 <= ord(c) <= 0xDFFF), None)


@given(st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17))
def test_the_check_character_is_gb_32100s(first17: str) -> None:
    total = sum(USCC_CHARSET.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    assert uscc_check_character(first17) == USCC_CHARSET[(31 - total % 31) % 31]
