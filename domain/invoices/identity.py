"""Identifiers: canonical invoice keys, unified social credit codes, and aggregate ids.

Keys are strings whose formats change over time (DOMAIN.md 2): never numbers, never a length in
a column type. A value that lost digits to a spreadsheet is refused, never repaired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from hashlib import sha1
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import InvalidInvoiceKeyError, InvalidTaxpayerCodeError

INVOICE_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:invoice:v1")
# uuid5 of INVOICE_NAMESPACE, its steps taken once: the namespace's hash state, and RFC 4122's
# version 5 and variant bits as one mask and one set (what `UUID(bytes=..., version=5)` does).
_NAMESPACE_HASH = sha1(INVOICE_NAMESPACE.bytes, usedforsecurity=False)
_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_SET = (5 << 76) | (0x8000 << 48)

_ASCII_DIGITS = re.compile(r"[0-9]+")

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
# Check characters are pure functions of the code: the few parties of a batch repeat, so the
# last codes' answers are kept (bounded).
_CHECKED_CODES = 4096

# Digits 3-4 of a fully digital number: the province-level bureau. Provinces reuse their
# GB/T 2260 prefix; planned-separately cities have their own codes (94, 95 seen). A number
# with a code outside this table is accepted with a warning (DOMAIN.md 2).
DEFAULT_REGION_CODES = frozenset(
    {
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
        "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
        "63", "64", "65", "91", "92", "93", "94", "95",
    }
)  # fmt: skip


@dataclass(frozen=True)
class FieldWarning:
    """A softer rule that did not hold: returned with the response, never a refusal."""

    field: str
    rule: str
    message: str


@dataclass(frozen=True)
class InvoiceKey:
    """An invoice's identity on the platform: a 20-digit number, or code plus 8-digit number."""

    number: str
    code: str | None = None

    @property
    def canonical(self) -> str:
        return self.number if self.code is None else f"{self.code}:{self.number}"

    @property
    def is_fully_digital(self) -> bool:
        return self.code is None


def _digits(field: str, value: str, lengths: tuple[int, ...]) -> str:
    if not isinstance(value, str):
        raise InvalidInvoiceKeyError(
            field, "must be a string of digits, not a number (numbers lose leading zeros)"
        )
    if not _ASCII_DIGITS.fullmatch(value):
        if re.fullmatch(r"[0-9.]+[eE][+-]?[0-9]+", value):
            raise InvalidInvoiceKeyError(
                field, f"{value!r} is in scientific notation: the digits were lost"
            )
        raise InvalidInvoiceKeyError(
            field, f"{value!r} must contain only the ASCII digits 0-9 (no spaces or full-width)"
        )
    if len(value) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise InvalidInvoiceKeyError(field, f"must have {want} digits, got {len(value)}")
    return value


def parse_invoice_key(number: str, code: str | None) -> InvoiceKey:
    """Validate a number (and code, for legacy invoices) into an `InvoiceKey`."""
    if code is None or code == "":
        return InvoiceKey(number=_digits("number", number, (20,)))
    return InvoiceKey(number=_digits("number", number, (8,)), code=_digits("code", code, (10, 12)))


def parse_canonical_key(text: str) -> InvoiceKey:
    """Parse the canonical form (`20 digits` or `code:number`) used in URLs and exports."""
    code, sep, number = text.partition(":")
    return parse_invoice_key(number, code) if sep else parse_invoice_key(text, None)


def key_warnings(key: InvoiceKey, issued_on: date, regions: frozenset[str]) -> list[FieldWarning]:
    """Soft checks on a fully digital number: its year and region digits."""
    if not key.is_fully_digital:
        return []
    warnings = []
    year, region = key.number[:2], key.number[2:4]
    if year != f"{issued_on.year % 100:02d}":
        warnings.append(
            FieldWarning(
                "number",
                "number_year",
                f"number starts with year {year} but the issue date is {issued_on.isoformat()}",
            )
        )
    if region not in regions:
        warnings.append(
            FieldWarning("number", "number_region", f"region code {region} is not in the table")
        )
    return warnings


def normalise_code(raw: str) -> str:
    return raw.replace(" ", "").replace("-", "").upper()


@lru_cache(maxsize=_CHECKED_CODES)
def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


@lru_cache(maxsize=_CHECKED_CODES)
def organisation_code_valid(uscc: str) -> bool:
    """GB 11714: characters 9-17 are an organisation code with its own check character."""
    body, check = uscc[8:16], uscc[16]
    if not all(c.isdigit() or "A" <= c <= "Z" for c in body):
        return False
    total = sum(
        (int(c) if c.isdigit() else ord(c) - 55) * w
        for c, w in zip(body, _ORG_WEIGHTS, strict=True)
    )
    r = 11 - total % 11
    expected = "X" if r == 10 else "0" if r == 11 else str(r)
    return check == expected


def parse_uscc(field: str, raw: str) -> tuple[str, list[FieldWarning]]:
    """A unified social credit code (GB 32100): 18 characters with a check character."""
    if not isinstance(raw, str):
        raise InvalidTaxpayerCodeError(field, "must be a string")
    code = normalise_code(raw)
    if len(code) != 18:
        raise InvalidTaxpayerCodeError(field, f"must have 18 characters, got {len(code)}")
    bad = sorted({c for c in code if c not in USCC_CHARSET})
    if bad:
        raise InvalidTaxpayerCodeError(
            field, f"characters {''.join(bad)!r} are not allowed (no I, O, S, V, Z)"
        )
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise InvalidTaxpayerCodeError(
            field, f"check character is {code[17]!r}, GB 32100 gives {expected!r}"
        )
    warnings = []
    if not organisation_code_valid(code):
        warnings.append(
            FieldWarning(
                field, "organisation_code", "embedded organisation code fails its GB 11714 check"
            )
        )
    return code, warnings


def invoice_id(tenant_id: str, key: InvoiceKey) -> UUID:
    """An invoice's aggregate id: the same invoice of the same tenant always maps here."""
    digest = _NAMESPACE_HASH.copy()
    digest.update(f"{tenant_id}|{key.canonical}".encode())
    return UUID(int=int.from_bytes(digest.digest()[:16]) & _KEEP | _SET)
