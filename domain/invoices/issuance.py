"""Validation of a new invoice: every rule of DOMAIN.md 2-4, all broken rules reported at once.

`validate_draft` turns what a clerk or ERP sent (`InvoiceDraft`) into checked `InvoiceFacts`
plus warnings for the softer rules, or raises `ValidationFailedError` listing every violation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TypeVar

from domain.bounds import (
    CODE_LENGTH,
    FIRST_DAY,
    LAST_DAY,
    MONEY_DIGITS,
    NAME_LENGTH,
    NOTE_LENGTH,
    all_clean,
    check_day,
    check_text,
)
from domain.errors import (
    InvalidFieldError,
    InvalidInvoiceTypeError,
    InvalidLineItemError,
    InvalidTaxpayerCodeError,
    IssueDateInFutureError,
    TaxOutOfToleranceError,
    TotalMismatchError,
    ValidationFailedError,
)
from domain.invoices.identity import (
    DEFAULT_REGION_CODES,
    FieldWarning,
    InvoiceKey,
    key_warnings,
    parse_canonical_key,
    parse_invoice_key,
    parse_uscc,
)
from domain.invoices.values import (
    DEFAULT_RATE_TABLE,
    EXEMPT,
    INVOICE_TAX_TOLERANCE,
    LINE_PRICE_TOLERANCE,
    LINE_TAX_TOLERANCE,
    NOT_TAXABLE,
    Direction,
    InvoiceType,
    LineItem,
    LineKind,
    RateTable,
    money,
)

T = TypeVar("T")


@dataclass(frozen=True)
class PartyDraft:
    name: str
    taxpayer_code: str | None = None


@dataclass(frozen=True)
class LineDraft:
    name: str
    amount: object
    tax: object
    rate: str
    kind: str = "normal"
    quantity: object = None
    unit_price: object = None
    unit: str | None = None
    tax_code: str | None = None


@dataclass(frozen=True)
class InvoiceDraft:
    """An invoice as submitted, before any rule is checked."""

    number: str
    invoice_type: str
    issued_on: date
    seller: PartyDraft
    buyer: PartyDraft
    amount: object
    tax: object
    total: object
    code: str | None = None
    direction: str = "outbound"
    tax_rate: str | None = None
    lines: tuple[LineDraft, ...] = ()
    remarks: str = ""
    reverses_key: str | None = None
    replaces_key: str | None = None


@dataclass(frozen=True)
class InvoiceFacts:
    """A checked invoice: every field valid, amounts consistent within the platform's tolerances."""

    key: InvoiceKey
    invoice_type: InvoiceType
    direction: Direction
    issued_on: date
    seller_code: str
    seller_name: str
    buyer_code: str | None
    buyer_name: str
    amount: Decimal
    tax: Decimal
    total: Decimal
    tax_rate: str | None
    lines: tuple[LineItem, ...]
    remarks: str
    reverses_key: str | None
    replaces_key: str | None = None


@dataclass
class _Collector:
    errors: list[InvalidFieldError] = field(default_factory=list)
    warnings: list[FieldWarning] = field(default_factory=list)

    def run(self, fn: Callable[..., T], *args: object) -> T | None:
        try:
            return fn(*args)
        except InvalidFieldError as e:
            self.errors.append(e)
            return None

    def fail(self, error: InvalidFieldError) -> None:
        self.errors.append(error)


def _code_kind_warning(key: InvoiceKey, invoice_type: InvoiceType) -> FieldWarning | None:
    """Legacy codes carry the invoice kind (DOMAIN.md 2); a disagreement is worth a warning."""
    if key.code is None:
        return None
    if len(key.code) == 12:
        kind = key.code[-2:]
        special = kind == "13"
        electronic = kind in ("11", "12", "13")
        if special != invoice_type.is_special or electronic == invoice_type.is_paper:
            return FieldWarning(
                "code", "code_kind", f"code kind {kind} does not match type {invoice_type.value}"
            )
    else:
        digit = key.code[7]
        if (digit in "15") != invoice_type.is_special:
            return FieldWarning(
                "code", "code_kind", f"code digit 8 ({digit}) does not match {invoice_type.value}"
            )
    return None


def _check_lines(
    c: _Collector, draft: InvoiceDraft, rates: RateTable, red: bool
) -> tuple[LineItem, ...]:
    lines: list[LineItem] = []
    total_diff = Decimal(0)
    for i, ld in enumerate(draft.lines):
        at = f"lines[{i}]"
        if not ld.name or not ld.name.strip():
            c.fail(InvalidLineItemError(f"{at}.name", "must not be empty", rule="required"))
        amount = c.run(money, f"{at}.amount", ld.amount)
        tax = c.run(money, f"{at}.tax", ld.tax)
        rate_known = c.run(rates.check, f"{at}.rate", ld.rate, draft.issued_on) is not None or (
            ld.rate in (EXEMPT, NOT_TAXABLE)
        )
        try:
            kind = LineKind(ld.kind)
        except ValueError:
            choices = ", ".join(k.value for k in LineKind)
            c.fail(
                InvalidLineItemError(
                    f"{at}.kind", f"{ld.kind!r} is not one of {choices}", rule="enum"
                )
            )
            kind = LineKind.NORMAL
        quantity = None if ld.quantity is None else c.run(_decimal, f"{at}.quantity", ld.quantity)
        price = (
            None if ld.unit_price is None else c.run(_decimal, f"{at}.unit_price", ld.unit_price)
        )
        if amount is None or tax is None or not rate_known:
            continue
        negative_expected = (kind is LineKind.DISCOUNT) != red
        if amount != 0 and (amount < 0) != negative_expected:
            want = "negative" if negative_expected else "positive"
            c.fail(
                InvalidLineItemError(
                    f"{at}.amount", f"a {kind.value} line must be {want}", rule="line_sign"
                )
            )
        if ld.rate in (EXEMPT, NOT_TAXABLE):
            if tax != 0:
                c.fail(TaxOutOfToleranceError(f"{at}.tax", f"a {ld.rate} line carries no tax"))
        else:
            diff = amount * Decimal(ld.rate) - tax
            if abs(diff) > LINE_TAX_TOLERANCE:
                c.fail(
                    TaxOutOfToleranceError(
                        f"{at}.tax",
                        f"{tax} differs from {amount} x {ld.rate} by {abs(diff):.4f} "
                        f"(tolerance {LINE_TAX_TOLERANCE})",
                    )
                )
            total_diff += diff
        if quantity is not None and price is not None:
            if abs(quantity * price - amount) > LINE_PRICE_TOLERANCE:
                c.fail(
                    InvalidLineItemError(
                        f"{at}.amount",
                        f"quantity x unit price = {quantity * price} but amount is "
                        f"{amount} (tolerance {LINE_PRICE_TOLERANCE})",
                        rule="quantity_price",
                    )
                )
        lines.append(
            LineItem(
                ld.name.strip(), amount, tax, ld.rate, kind, quantity, price, ld.unit, ld.tax_code
            )
        )
    if abs(total_diff) > INVOICE_TAX_TOLERANCE:
        c.fail(
            TaxOutOfToleranceError(
                "tax",
                f"line tax differences add up to {abs(total_diff):.4f} "
                f"(tolerance {INVOICE_TAX_TOLERANCE})",
                rule="tax_tolerance_total",
            )
        )
    return tuple(lines)


def _decimal(field_name: str, value: object) -> Decimal:
    if isinstance(value, float | bool):
        raise InvalidLineItemError(
            field_name, "must be a decimal string, not a float", rule="decimal_format"
        )
    text = str(value)
    if len(text) > 40:
        raise InvalidLineItemError(field_name, "is longer than 40 characters", rule="bounds")
    try:
        d = Decimal(text)
    except ArithmeticError:
        raise InvalidLineItemError(
            field_name, f"{value!r} is not a decimal", rule="decimal_format"
        ) from None
    if not d.is_finite():
        raise InvalidLineItemError(field_name, "must be finite", rule="decimal_format")
    if d != 0 and d.adjusted() >= MONEY_DIGITS - 2:
        raise InvalidLineItemError(
            field_name, f"must be below 10^{MONEY_DIGITS - 2} in absolute value", rule="bounds"
        )
    return d


def _other_key(field_name: str, text: str) -> InvoiceKey:
    """Another invoice's canonical key; errors name the field that held it."""
    try:
        return parse_canonical_key(text)
    except InvalidFieldError as e:
        raise type(e)(field_name, e.message, e.rule) from None


MAX_LINES = 2000


def _check_bounds(c: _Collector, draft: InvoiceDraft) -> None:
    """Lengths, control characters and the date window of every text the invoice stores."""
    texts: list[tuple[str, object, int, bool]] = [
        ("number", draft.number, CODE_LENGTH, False),
        ("code", draft.code, CODE_LENGTH, False),
        ("invoice_type", draft.invoice_type, CODE_LENGTH, False),
        ("direction", draft.direction, CODE_LENGTH, False),
        ("tax_rate", draft.tax_rate, CODE_LENGTH, False),
        ("seller.name", draft.seller.name, NAME_LENGTH, False),
        ("seller.taxpayer_code", draft.seller.taxpayer_code, CODE_LENGTH, False),
        ("buyer.name", draft.buyer.name, NAME_LENGTH, False),
        ("buyer.taxpayer_code", draft.buyer.taxpayer_code, CODE_LENGTH, False),
        ("remarks", draft.remarks, NOTE_LENGTH, True),
        ("reverses_key", draft.reverses_key, CODE_LENGTH, False),
        ("replaces_key", draft.replaces_key, CODE_LENGTH, False),
    ]
    for i, line in enumerate(draft.lines[:MAX_LINES]):
        texts += [
            (f"lines[{i}].name", line.name, NAME_LENGTH, False),
            (f"lines[{i}].rate", line.rate, CODE_LENGTH, False),
            (f"lines[{i}].kind", line.kind, CODE_LENGTH, False),
            (f"lines[{i}].unit", line.unit, CODE_LENGTH, False),
            (f"lines[{i}].tax_code", line.tax_code, CODE_LENGTH, False),
        ]
    strings = [(n, v, limit, m) for n, v, limit, m in texts if isinstance(v, str)]
    fits = all(len(v) <= limit for _, v, limit, _ in strings)
    if not fits or not all_clean(
        [v for _, v, _, m in strings if not m], [v for _, v, _, m in strings if m]
    ):  # some text breaks a rule: find which, field by field
        for name, value, limit, multiline in strings:
            c.run(check_text, name, value, limit, multiline)
    if len(draft.lines) > MAX_LINES:
        c.fail(InvalidLineItemError("lines", f"at most {MAX_LINES} lines", rule="max_items"))
    c.run(check_day, "issued_on", draft.issued_on)


def validate_draft(
    draft: InvoiceDraft,
    today: date,
    rates: RateTable = DEFAULT_RATE_TABLE,
    regions: frozenset[str] = DEFAULT_REGION_CODES,
) -> tuple[InvoiceFacts, list[FieldWarning]]:
    """Check every rule; `today` is the Beijing (Asia/Shanghai) date, passed in by the caller.

    A draft of the everyday shape that keeps every rule is accepted the short way
    (`_plain_facts`); any other goes through every rule one by one (`validate_by_rules`),
    which alone words the errors. Both give the same facts and warnings (property tests)."""
    plain = _plain_facts(draft, today, rates, regions)
    if plain is not None:
        return plain
    return validate_by_rules(draft, today, rates, regions)


_MONEY_TEXT = re.compile(r"-?[0-9]{1,16}\.[0-9]{2}")  # values.money's plain cents
# What `_decimal` accepts and keeps as written: at most 16 digits before the point, so never
# 10^16 or more, and finite; at most 40 characters.
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,16}(?:\.[0-9]+)?")
_FULLY_DIGITAL = {t.value: t for t in InvoiceType if t.is_fully_digital}
_DIRECTIONS = {d.value: d for d in Direction}
_LINE_KINDS = {k.value: k for k in LineKind}
_NOT_TAXED = (EXEMPT, NOT_TAXABLE)
# In cents times thousandths (a rate in thousandths): the tolerances of values.py.
_LINE_TAX_SLACK = int(LINE_TAX_TOLERANCE * 100_000)
_INVOICE_TAX_SLACK = int(INVOICE_TAX_TOLERANCE * 100_000)
# parse_uscc's answers for codes it accepts, by field: a batch repeats its parties (bounded).
_USCC_SEEN: dict[tuple[str, str], tuple[str, tuple[FieldWarning, ...]]] = {}


def _uscc(field_name: str, raw: str) -> tuple[str, tuple[FieldWarning, ...]] | None:
    key = (field_name, raw)
    found = _USCC_SEEN.get(key)
    if found is None:
        try:
            code, warnings = parse_uscc(field_name, raw)
        except InvalidFieldError:
            return None
        if len(_USCC_SEEN) >= 4096:
            _USCC_SEEN.clear()
        found = _USCC_SEEN[key] = (code, tuple(warnings))
    return found


# The short way builds its frozen values (InvoiceKey, LineItem, InvoiceFacts: data classes
# without __post_init__ or slots) by setting their attribute dict whole, every field in field
# order, as their __init__ would one `object.__setattr__` at a time (three times slower):
# tests/unit/test_issuance_short_way.py holds them equal to the constructed ones, field by field.
_new, _set = object.__new__, object.__setattr__


def _cents(text: object) -> int | None:
    """Plain-cents money text as whole cents (what `money` gives as a Decimal), else None."""
    if type(text) is not str or _MONEY_TEXT.fullmatch(text) is None:
        return None
    return int(text.replace(".", ""))


def _short_code(value: object, one_line: list[str]) -> bool:
    """An optional code of the short way: absent, or text within CODE_LENGTH (then kept in
    `one_line`, whose texts `all_clean` checks together at the end); False for anything else."""
    if value is None:
        return True
    if type(value) is not str or len(value) > CODE_LENGTH:
        return False
    one_line.append(value)
    return True


def _plain_facts(
    draft: InvoiceDraft, today: date, rates: RateTable, regions: frozenset[str]
) -> tuple[InvoiceFacts, list[FieldWarning]] | None:
    """The facts and warnings of a draft of the everyday shape that breaks no rule, else None.

    The everyday shape: a fully digital blue invoice (no code, no reverses_key or
    replaces_key) whose texts are plain `str`, money written in plain cents, rates from the
    table with at most three places, quantities and prices as decimal text, and no rule
    broken. Money sums and tolerances are checked in whole cents, exactly; whatever is not
    that shape or breaks anything returns None, for `validate_by_rules` to word it."""
    number, seller, buyer, lines = draft.number, draft.seller, draft.buyer, draft.lines
    if (
        draft.code is not None
        or draft.reverses_key is not None
        or draft.replaces_key is not None
        or type(number) is not str
        or len(number) != 20
        or not number.isdigit()
        or not number.isascii()
        or type(draft.issued_on) is not date
        or not FIRST_DAY <= draft.issued_on <= today
        or draft.issued_on > LAST_DAY
        or len(lines) > MAX_LINES
    ):
        return None
    if type(draft.invoice_type) is not str or type(draft.direction) is not str:
        return None
    invoice_type = _FULLY_DIGITAL.get(draft.invoice_type)
    direction = _DIRECTIONS.get(draft.direction)
    seller_name, seller_code = seller.name, seller.taxpayer_code
    buyer_name, buyer_code = buyer.name, buyer.taxpayer_code
    tax_rate, remarks = draft.tax_rate, draft.remarks
    if (
        invoice_type is None
        or direction is None
        or type(seller_name) is not str
        or type(buyer_name) is not str
        or type(seller_code) is not str
        or type(remarks) is not str
        or len(seller_name) > NAME_LENGTH
        or len(buyer_name) > NAME_LENGTH
        or len(seller_code) > CODE_LENGTH
        or len(remarks) > NOTE_LENGTH
        or not seller_name.strip()
        or not buyer_name.strip()
    ):
        return None
    one_line = [seller_name, buyer_name, seller_code]
    if not (_short_code(buyer_code, one_line) and _short_code(tax_rate, one_line)):
        return None
    amount, tax, total = _cents(draft.amount), _cents(draft.tax), _cents(draft.total)
    if amount is None or tax is None or total is None or amount + tax != total or total <= 0:
        return None

    seller_parsed = _uscc("seller.taxpayer_code", seller_code) if seller_code else None
    if seller_parsed is None:
        return None
    buyer_parsed = None
    if buyer_code:
        buyer_parsed = _uscc("buyer.taxpayer_code", buyer_code)
        if buyer_parsed is None:
            return None
    elif invoice_type.is_special:
        return None

    issued_on = draft.issued_on
    items: list[LineItem] = []
    if lines:
        line_amount = line_tax = total_diff = 0
        for ld in lines:
            name, rate, kind_text, unit, tax_code = ld.name, ld.rate, ld.kind, ld.unit, ld.tax_code
            if (
                type(name) is not str
                or type(rate) is not str
                or type(kind_text) is not str
                or len(name) > NAME_LENGTH
                or len(rate) > CODE_LENGTH
                or not name.strip()
            ):
                return None
            one_line += (name, rate)
            if not (_short_code(unit, one_line) and _short_code(tax_code, one_line)):
                return None
            kind = _LINE_KINDS.get(kind_text)
            a, t = _cents(ld.amount), _cents(ld.tax)
            known = rates.in_force(rate, issued_on)
            if kind is None or a is None or t is None or known is None:
                return None
            if a != 0 and (a < 0) != (kind is LineKind.DISCOUNT):
                return None
            value, milli = known
            if value is None:  # exempt, not taxable: no tax
                if rate not in _NOT_TAXED or t != 0:
                    return None
            else:
                if milli is None:
                    return None
                diff = a * milli - t * 1000  # in hundred-thousandths
                if abs(diff) > _LINE_TAX_SLACK:
                    return None
                total_diff += diff
            amount_d, tax_d = Decimal(ld.amount), Decimal(ld.tax)  # type: ignore[arg-type]
            quantity = price = None
            if ld.quantity is not None:
                quantity = _decimal_text(ld.quantity)
                if quantity is None:
                    return None
            if ld.unit_price is not None:
                price = _decimal_text(ld.unit_price)
                if price is None:
                    return None
            if (
                quantity is not None
                and price is not None
                and abs(quantity * price - amount_d) > LINE_PRICE_TOLERANCE
            ):
                return None
            line_amount += a
            line_tax += t
            item = _new(LineItem)
            _set(
                item,
                "__dict__",
                {
                    "name": name.strip(),
                    "amount": amount_d,
                    "tax": tax_d,
                    "rate": rate,
                    "kind": kind,
                    "quantity": quantity,
                    "unit_price": price,
                    "unit": unit,
                    "tax_code": tax_code,
                },
            )
            items.append(item)
        if abs(total_diff) > _INVOICE_TAX_SLACK or line_amount != amount or line_tax != tax:
            return None
    else:
        if tax_rate is None:
            return None
        known = rates.in_force(tax_rate, issued_on)
        if known is None:
            return None
        value, milli = known
        if value is None:
            if tax != 0:
                return None
        elif milli is None or abs(amount * milli - tax * 1000) > _INVOICE_TAX_SLACK:
            return None
    if not all_clean(one_line, [remarks]):
        return None

    key = _new(InvoiceKey)
    _set(key, "__dict__", {"number": number, "code": None})
    warnings = key_warnings(key, issued_on, regions)
    warnings += seller_parsed[1]
    if buyer_parsed is not None:
        warnings += buyer_parsed[1]
    facts = _new(InvoiceFacts)
    _set(
        facts,
        "__dict__",
        {
            "key": key,
            "invoice_type": invoice_type,
            "direction": direction,
            "issued_on": issued_on,
            "seller_code": seller_parsed[0],
            "seller_name": seller_name.strip(),
            "buyer_code": buyer_parsed[0] if buyer_parsed is not None else None,
            "buyer_name": buyer_name.strip(),
            "amount": Decimal(draft.amount),  # type: ignore[arg-type]
            "tax": Decimal(draft.tax),  # type: ignore[arg-type]
            "total": Decimal(draft.total),  # type: ignore[arg-type]
            "tax_rate": tax_rate,
            "lines": tuple(items),
            "remarks": remarks,
            "reverses_key": None,
            "replaces_key": None,
        },
    )
    return facts, warnings


def _decimal_text(value: object) -> Decimal | None:
    """What `_decimal` gives for plain decimal text (no exponent), else None."""
    if type(value) is not str or len(value) > 40 or _DECIMAL_TEXT.fullmatch(value) is None:
        return None
    return Decimal(value)


def validate_by_rules(
    draft: InvoiceDraft,
    today: date,
    rates: RateTable = DEFAULT_RATE_TABLE,
    regions: frozenset[str] = DEFAULT_REGION_CODES,
) -> tuple[InvoiceFacts, list[FieldWarning]]:
    """Every rule checked one by one, every broken one reported (what `validate_draft` does
    for any draft `_plain_facts` does not accept)."""
    c = _Collector()
    _check_bounds(c, draft)
    key = c.run(parse_invoice_key, draft.number, draft.code)
    invoice_type: InvoiceType | None = None
    try:
        invoice_type = InvoiceType(draft.invoice_type)
    except ValueError:
        c.fail(
            InvalidInvoiceTypeError(
                "invoice_type",
                f"{draft.invoice_type!r} is not one of {', '.join(t.value for t in InvoiceType)}",
                rule="enum",
            )
        )
    try:
        direction = Direction(draft.direction)
    except ValueError:
        c.fail(InvalidInvoiceTypeError("direction", "must be outbound or inbound", rule="enum"))
        direction = Direction.OUTBOUND
    if key is not None and invoice_type is not None:
        if invoice_type.is_fully_digital and key.code is not None:
            c.fail(
                InvalidInvoiceTypeError(
                    "code",
                    f"a {invoice_type.value} invoice has a 20-digit number and no code",
                    rule="type_key_mismatch",
                )
            )
        elif not invoice_type.is_fully_digital and key.code is None:
            c.fail(
                InvalidInvoiceTypeError(
                    "code",
                    f"a {invoice_type.value} invoice needs its 10- or 12-digit code",
                    rule="type_key_mismatch",
                )
            )
        else:
            w = _code_kind_warning(key, invoice_type)
            if w:
                c.warnings.append(w)
    if draft.issued_on > today:
        c.fail(
            IssueDateInFutureError(
                "issued_on",
                f"{draft.issued_on.isoformat()} is after "
                f"today ({today.isoformat()}, Asia/Shanghai)",
            )
        )
    elif key is not None:
        c.warnings.extend(key_warnings(key, draft.issued_on, regions))

    if not draft.seller.name.strip():
        c.fail(InvalidTaxpayerCodeError("seller.name", "must not be empty", rule="required"))
    if not draft.buyer.name.strip():
        c.fail(InvalidTaxpayerCodeError("buyer.name", "must not be empty", rule="required"))
    seller = None
    if not draft.seller.taxpayer_code:
        c.fail(
            InvalidTaxpayerCodeError(
                "seller.taxpayer_code", "the seller's code is required", rule="required"
            )
        )
    else:
        seller = c.run(parse_uscc, "seller.taxpayer_code", draft.seller.taxpayer_code)
    buyer = None
    if draft.buyer.taxpayer_code:
        buyer = c.run(parse_uscc, "buyer.taxpayer_code", draft.buyer.taxpayer_code)
    elif invoice_type is not None and invoice_type.is_special:
        c.fail(
            InvalidTaxpayerCodeError(
                "buyer.taxpayer_code",
                "a special VAT invoice needs the buyer's code (individuals get ordinary invoices)",
                rule="required_for_special",
            )
        )
    for parsed in (seller, buyer):
        if parsed:
            c.warnings.extend(parsed[1])

    amount = c.run(money, "amount", draft.amount)
    tax = c.run(money, "tax", draft.tax)
    total = c.run(money, "total", draft.total)
    red = draft.reverses_key is not None
    reverses = None
    if red:
        reverses = c.run(_other_key, "reverses_key", draft.reverses_key)
    replaces = None
    if draft.replaces_key is not None:
        replaces = c.run(_other_key, "replaces_key", draft.replaces_key)
    if amount is not None and tax is not None and total is not None:
        if amount + tax != total:
            c.fail(
                TotalMismatchError(
                    "total", f"{total} is not amount {amount} + tax {tax} = {amount + tax}"
                )
            )
        if not red and total <= 0:
            c.fail(
                TotalMismatchError(
                    "total",
                    "must be positive; a negative invoice is a red-letter "
                    "invoice and needs reverses_key",
                    rule="total_sign",
                )
            )
        if red and total >= 0:
            c.fail(
                TotalMismatchError(
                    "total", "a red-letter invoice has a negative total", rule="total_sign"
                )
            )
    lines: tuple[LineItem, ...] = ()
    rate_value = None
    if draft.lines:
        lines = _check_lines(c, draft, rates, red)
        if amount is not None and tax is not None and len(lines) == len(draft.lines):
            line_amount = sum((ln.amount for ln in lines), Decimal("0.00"))
            line_tax = sum((ln.tax for ln in lines), Decimal("0.00"))
            if line_amount != amount:
                c.fail(
                    TotalMismatchError(
                        "amount",
                        f"{amount} is not the sum of the lines ({line_amount})",
                        rule="line_sum",
                    )
                )
            if line_tax != tax:
                c.fail(
                    TotalMismatchError(
                        "tax",
                        f"{tax} is not the sum of the lines' tax ({line_tax})",
                        rule="line_sum",
                    )
                )
    elif draft.tax_rate is None:
        c.fail(
            TaxOutOfToleranceError(
                "tax_rate", "required when no line items are given", rule="required"
            )
        )
    else:
        rate_value = c.run(rates.check, "tax_rate", draft.tax_rate, draft.issued_on)
        if amount is not None and tax is not None:
            if rate_value is not None:
                diff = abs(amount * rate_value - tax)
                if diff > INVOICE_TAX_TOLERANCE:
                    c.fail(
                        TaxOutOfToleranceError(
                            "tax",
                            f"{tax} differs from {amount} x {draft.tax_rate} by {diff:.4f} "
                            f"(tolerance {INVOICE_TAX_TOLERANCE})",
                        )
                    )
            elif tax != 0 and draft.tax_rate in ("exempt", "not_taxable"):
                c.fail(TaxOutOfToleranceError("tax", f"a {draft.tax_rate} invoice carries no tax"))

    if c.errors:
        raise ValidationFailedError(c.errors)
    assert key is not None and invoice_type is not None and seller is not None
    assert amount is not None and tax is not None and total is not None
    facts = InvoiceFacts(
        key=key,
        invoice_type=invoice_type,
        direction=direction,
        issued_on=draft.issued_on,
        seller_code=seller[0],
        seller_name=draft.seller.name.strip(),
        buyer_code=buyer[0] if buyer else None,
        buyer_name=draft.buyer.name.strip(),
        amount=amount,
        tax=tax,
        total=total,
        tax_rate=draft.tax_rate,
        lines=lines,
        remarks=draft.remarks,
        reverses_key=reverses.canonical if reverses else None,
        replaces_key=replaces.canonical if replaces else None,
    )
    return facts, c.warnings
