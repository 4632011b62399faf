"""Values an invoice is made of: its type, money, dated tax rates and line items.

Money is `Decimal` with exactly two places; totals are checked, never recomputed (DOMAIN.md 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property

from domain.bounds import MONEY_DIGITS, check_money
from domain.errors import InvalidMoneyError, UnknownTaxRateError

CENT = Decimal("0.01")
# Money as it is usually written: at most 16 digits, a point and two more. Such a text is
# already in cents and within numeric(18,2), so it needs none of the checks below.
_PLAIN_CENTS = re.compile(r"-?[0-9]{1,16}\.[0-9]{2}")
LINE_TAX_TOLERANCE = Decimal("0.06")
INVOICE_TAX_TOLERANCE = Decimal("1.27")
LINE_PRICE_TOLERANCE = Decimal("0.01")


class InvoiceType(StrEnum):
    """Kind (special/ordinary) x generation (fully digital/legacy) x medium (paper/electronic)."""

    DIGITAL_SPECIAL = "digital_special"
    DIGITAL_ORDINARY = "digital_ordinary"
    DIGITAL_PAPER_SPECIAL = "digital_paper_special"
    DIGITAL_PAPER_ORDINARY = "digital_paper_ordinary"
    LEGACY_SPECIAL_PAPER = "legacy_special_paper"
    LEGACY_ORDINARY_PAPER = "legacy_ordinary_paper"
    LEGACY_SPECIAL_ELECTRONIC = "legacy_special_electronic"
    LEGACY_ORDINARY_ELECTRONIC = "legacy_ordinary_electronic"

    @property
    def is_fully_digital(self) -> bool:
        return self.value.startswith("digital")

    @property
    def is_paper(self) -> bool:
        return "paper" in self.value

    @property
    def is_special(self) -> bool:
        return "special" in self.value


class Direction(StrEnum):
    """Whether the enterprise issued the invoice (outbound) or received it (inbound)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class LineKind(StrEnum):
    """发票行性质: 0 normal, 1 discount line (negative), 2 the line a discount applies to."""

    NORMAL = "normal"
    DISCOUNT = "discount"
    DISCOUNTED = "discounted"


def money(field: str, value: object) -> Decimal:
    """Parse money: a Decimal, int or numeric string with at most two places; never a float."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidMoneyError(field, 'must be a decimal string such as "100.00", not a float')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        text = str(value).strip()
        if _PLAIN_CENTS.fullmatch(text):
            return Decimal(text)
        if len(text) > 40:  # no amount that fits numeric(18,2) is written longer
            raise InvalidMoneyError(field, "is longer than 40 characters", "money_range")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise InvalidMoneyError(field, f"{value!r} is not a decimal amount") from None
    else:
        raise InvalidMoneyError(field, "must be a decimal amount")
    if not amount.is_finite():
        raise InvalidMoneyError(field, "must be a finite amount")
    if amount.adjusted() >= MONEY_DIGITS - 2:  # before quantizing: 1e30 must not reach it
        check_money(field, Decimal("Infinity"))
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and amount != amount.quantize(CENT):
        raise InvalidMoneyError(field, f"{value} has more than two decimal places")
    return check_money(field, amount.quantize(CENT))


@dataclass(frozen=True)
class RateEntry:
    """One rate and the dates it may appear on an invoice (inclusive)."""

    rate: str
    valid_from: date
    valid_to: date | None
    label: str

    def covers(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


EXEMPT = "exempt"
NOT_TAXABLE = "not_taxable"


@dataclass(frozen=True)
class RateTable:
    """VAT rates as dated data (DOMAIN.md 3), not a fixed list: a tenant may extend it."""

    entries: tuple[RateEntry, ...]

    @cached_property
    def _by_rate(self) -> dict[str, tuple[RateEntry, ...]]:
        found: dict[str, list[RateEntry]] = {}
        for e in self.entries:
            found.setdefault(e.rate, []).append(e)
        return {rate: tuple(entries) for rate, entries in found.items()}

    @cached_property
    def _in_force(self) -> dict[tuple[str, date], tuple[Decimal | None, int | None]]:
        return {}

    def in_force(self, rate: str, on: date) -> tuple[Decimal | None, int | None] | None:
        """`check`'s answer for a rate in force on `on`, with the rate in thousandths when that
        is a whole number from 0 to 1000 (exact integer arithmetic on cents; else None); None
        for a rate `check` refuses. Answers are kept (bounded): a batch repeats its rates."""
        key = (rate, on)
        found = self._in_force.get(key)
        if found is None:
            milli = None
            try:
                value = self.check("rate", rate, on)
                if value is not None:
                    scaled = value * 1000
                    if scaled == scaled.to_integral_value() and 0 <= scaled <= 1000:
                        milli = int(scaled)
            except (UnknownTaxRateError, ArithmeticError):
                return None
            if len(self._in_force) >= 1024:
                self._in_force.clear()
            found = self._in_force[key] = (value, milli)
        return found

    def check(self, field: str, rate: str, on: date) -> Decimal | None:
        """The numeric rate (None for exempt / not taxable) if it is valid on `on`."""
        entries = self._by_rate.get(rate, ())
        if not entries:
            known = ", ".join(sorted({e.rate for e in self.entries}))
            raise UnknownTaxRateError(field, f"{rate!r} is not a known rate (known: {known})")
        if not any(e.covers(on) for e in entries):
            raise UnknownTaxRateError(
                field, f"rate {rate} is not in force on {on.isoformat()}", rule="tax_rate_date"
            )
        return None if rate in (EXEMPT, NOT_TAXABLE) else Decimal(rate)


_EPOCH = date(1994, 1, 1)
DEFAULT_RATE_TABLE = RateTable(
    (
        RateEntry("0.17", _EPOCH, date(2018, 4, 30), "17% (before 2018-05-01)"),
        RateEntry("0.16", date(2018, 5, 1), date(2019, 3, 31), "16%"),
        RateEntry("0.13", date(1994, 1, 1), date(2017, 6, 30), "13% (before 2017-07-01)"),
        RateEntry("0.13", date(2019, 4, 1), None, "13% goods, processing, movable leasing"),
        RateEntry("0.11", date(2017, 7, 1), date(2018, 4, 30), "11%"),
        RateEntry("0.10", date(2018, 5, 1), date(2019, 3, 31), "10%"),
        RateEntry("0.09", date(2019, 4, 1), None, "9% transport, construction, real estate"),
        RateEntry("0.06", _EPOCH, None, "6% services and intangibles"),
        RateEntry("0.05", _EPOCH, None, "5% simplified levy (real estate)"),
        RateEntry("0.03", _EPOCH, None, "3% simplified levy"),
        RateEntry("0.02", _EPOCH, None, "2% second-hand goods"),
        RateEntry("0.015", date(2016, 5, 1), None, "1.5% individuals renting housing"),
        RateEntry("0.01", date(2020, 3, 1), date(2027, 12, 31), "1% small-scale relief"),
        RateEntry("0", _EPOCH, None, "0% exports"),
        RateEntry(EXEMPT, _EPOCH, None, "免税 tax-exempt"),
        RateEntry(NOT_TAXABLE, _EPOCH, None, "不征税 not taxable"),
    )
)


@dataclass(frozen=True)
class LineItem:
    """One invoice line as printed: amounts are stored as stated, checked within tolerances."""

    name: str
    amount: Decimal
    tax: Decimal
    rate: str
    kind: LineKind = LineKind.NORMAL
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    unit: str | None = None
    tax_code: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "amount": str(self.amount),
            "tax": str(self.tax),
            "rate": self.rate,
            "kind": self.kind.value,
            "quantity": None if self.quantity is None else str(self.quantity),
            "unit_price": None if self.unit_price is None else str(self.unit_price),
            "unit": self.unit,
            "tax_code": self.tax_code,
        }

    @classmethod
    def from_dict(cls, d: dict[str, str | None]) -> LineItem:
        def dec(v: str | None) -> Decimal | None:
            return None if v is None else Decimal(v)

        return cls(
            name=d["name"] or "",
            amount=Decimal(d["amount"] or "0"),
            tax=Decimal(d["tax"] or "0"),
            rate=d["rate"] or "",
            kind=LineKind(d["kind"] or "normal"),
            quantity=dec(d.get("quantity")),
            unit_price=dec(d.get("unit_price")),
            unit=d.get("unit"),
            tax_code=d.get("tax_code"),
        )
