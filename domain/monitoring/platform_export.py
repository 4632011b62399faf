"""Rows of the tax platform's invoice exports (全量发票查询), as DOMAIN.md 5 describes them.

Headers are found by content, the column mapping is data (overridable), and a value that lost
information (a key turned into a number or scientific notation, full-width digits) is refused
with its reason, never repaired.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Protocol

from domain.bounds import FIRST_DAY, LAST_DAY, MAX_MONEY, OutOfBoundsError, check_day
from domain.errors import InvalidFieldError
from domain.invoices.identity import parse_invoice_key

# Header text as the platform writes it -> our field. A tenant may pass its own mapping.
DEFAULT_COLUMNS: dict[str, str] = {
    "发票代码": "code",
    "发票号码": "number",
    "数电发票号码": "digital_number",
    "数电票号码": "digital_number",
    "销方识别号": "seller_code",
    "销方纳税人识别号": "seller_code",
    "销方名称": "seller_name",
    "购方识别号": "buyer_code",
    "购方纳税人识别号": "buyer_code",
    "购买方名称": "buyer_name",
    "购方名称": "buyer_name",
    "开票日期": "issued_on",
    "金额": "amount",
    "税额": "tax",
    "价税合计": "total",
    "发票状态": "platform_status",
    "发票票种": "invoice_kind",
    "备注": "remarks",
}
REQUIRED = ("issued_on", "amount", "tax", "total")
HEADER_MARKERS = ("发票号码", "价税合计")

# Platform statuses (DOMAIN.md 4): as text on exports, or as vendor codes.
PLATFORM_STATUS = {
    "正常": "normal",
    "0": "normal",
    "失控": "out_of_control",
    "1": "out_of_control",
    "作废": "voided",
    "已作废": "voided",
    "2": "voided",
    "红冲": "reversed",
    "已红冲": "reversed",
    "3": "reversed",
    "异常": "abnormal",
    "4": "abnormal",
    "部分红冲": "partially_reversed",
    "7": "partially_reversed",
    "全额红冲": "reversed",
    "8": "reversed",
}
EMPTY = {"", "--", "-", "—"}
_GROUPED = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d{1,2})?")
_FULL_WIDTH = re.compile(r"[\uff10-\uff19\uff0e\uff0c]")
# The shapes nearly every cell of a platform export has: read without the general path's
# steps, to the same value. Anything else (or out of range) takes the general path.
_PLAIN_MONEY = re.compile(r"-?[0-9]{1,16}\.[0-9]{2}")
_GROUPED_MONEY = re.compile(r"-?[0-9]{1,3}(,[0-9]{3}){1,4}\.[0-9]{2}")
_DIGITAL_KEY = re.compile(r"[0-9]{20}")
_NO_CELL = (None, "")
_ISO_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?: ([0-9]{2}):([0-9]{2}):([0-9]{2}))?")
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%Y年%m月%d日",
    "%Y%m%d",
)


class RowError(InvalidFieldError):
    """A row that cannot be read as it stands; the line and column say where."""

    rule = "unreadable_row"


class PlatformRow(NamedTuple):
    """One invoice as the platform exported it, checked and normalised. (A named tuple: a
    million are made per export, at a seventh of a frozen dataclass's cost.)"""

    line: int
    invoice_key: str
    issued_on: date
    amount: Decimal
    tax: Decimal
    total: Decimal
    seller_code: str | None
    buyer_code: str | None
    platform_status: str
    raw: str


def find_header(row: list[object]) -> bool:
    cells = {str(c).strip() for c in row if c is not None}
    return all(m in cells for m in HEADER_MARKERS) or (
        "价税合计" in cells and "数电发票号码" in cells
    )


def column_index(header: list[object], mapping: dict[str, str]) -> dict[str, int]:
    """Our field -> column position; refuses a header that lacks a required column."""
    index: dict[str, int] = {}
    for i, cell in enumerate(header):
        field = mapping.get(str(cell).strip()) if cell is not None else None
        if field and field not in index:
            index[field] = i
    missing = [f for f in REQUIRED if f not in index]
    if "number" not in index and "digital_number" not in index:
        missing.insert(0, "number")
    if missing:
        names = {v: k for k, v in reversed(list(mapping.items()))}
        raise RowError(
            "header",
            "missing required columns: " + ", ".join(f"{names.get(f, f)} ({f})" for f in missing),
            "missing_columns",
        )
    return index


def _text(field: str, value: object) -> str | None:
    if type(value) is str:  # the usual case, first
        text = value.strip()
        return None if text in EMPTY else text
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, int | float):
        raise RowError(
            field,
            f"{value!r} is stored as a number: a spreadsheet may have dropped "
            "digits or leading zeros; export it as text",
            "number_cell",
        )
    text = str(value).strip()
    return None if text in EMPTY else text


def _key(cells: dict[str, object]) -> str:
    digital = cells.get("digital_number")
    if (
        type(digital) is str
        and _DIGITAL_KEY.fullmatch(digital)
        and cells.get("number") in _NO_CELL
        and cells.get("code") in _NO_CELL
    ):
        return digital  # what the general path makes of it
    return _any_key(cells)


def _any_key(cells: dict[str, object]) -> str:
    digital = _text("digital_number", cells.get("digital_number"))
    number = _text("number", cells.get("number"))
    code = _text("code", cells.get("code"))
    for field, text in (("digital_number", digital), ("number", number), ("code", code)):
        if text is not None and _FULL_WIDTH.search(text):
            raise RowError(field, f"{text!r} has full-width digits", "full_width")
    try:
        if digital:
            return parse_invoice_key(digital, None).canonical
        if number and code:
            return parse_invoice_key(number, code).canonical
        if number:
            return parse_invoice_key(number, None).canonical
    except InvalidFieldError as e:
        raise RowError(
            e.field if e.field != "number" or not digital else "digital_number",
            e.message,
            "invoice_key",
        ) from None
    raise RowError("number", "no invoice number", "required")


def _money(field: str, value: object) -> Decimal:
    if type(value) is str:
        if _PLAIN_MONEY.fullmatch(value):  # at most 16 digits: within MAX_MONEY
            return Decimal(value)
        if _GROUPED_MONEY.fullmatch(value):
            return Decimal(value.replace(",", ""))
    return _any_money(field, value)


def _any_money(field: str, value: object) -> Decimal:
    if isinstance(value, float):
        # XLSX stores amounts as doubles; two decimals survive that round trip exactly.
        value = f"{value:.2f}" if round(value, 2) == value else repr(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(field, value) if not isinstance(value, Decimal) else str(value)
    if text is None:
        raise RowError(field, "is empty", "required")
    if _FULL_WIDTH.search(text):
        raise RowError(field, f"{text!r} has full-width digits", "full_width")
    cleaned = text.replace("￥", "").replace("¥", "").strip()
    if "," in cleaned:
        # Thousands separators are read only where they are unambiguous (1,234,567.89);
        # "1234,50" or "1,23" could be a decimal comma: refused, not guessed.
        if not _GROUPED.fullmatch(cleaned):
            raise RowError(
                field, f"{text!r} has separators that are not thousands groups", "amount_format"
            )
        cleaned = cleaned.replace(",", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise RowError(field, f"{text!r} is not an amount", "amount_format") from None
    if not amount.is_finite():
        raise RowError(field, f"{text!r} is not an amount", "amount_format")
    if abs(amount) > MAX_MONEY:  # before quantize, which overflows the context's precision
        raise RowError(
            field,
            f"{text[:40]!r} is beyond {MAX_MONEY} in absolute value (numeric(18,2))",
            "money_range",
        )
    if amount != amount.quantize(Decimal("0.01")):
        raise RowError(field, f"{text!r} has more than two decimal places", "amount_format")
    return amount.quantize(Decimal("0.01"))


def _date(value: object) -> date:
    day = _parse_date(value)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise RowError(
            "issued_on", f"{day} is not between {FIRST_DAY} and {LAST_DAY}", "date_range"
        )
    return day


def check_period(period_from: date, period_to: date) -> tuple[date, date]:
    """A reconciliation period: both ends within the date window, the first not after the last."""
    check_day("period_from", period_from)
    check_day("period_to", period_to)
    if period_to < period_from:
        raise OutOfBoundsError(
            "period_to", f"{period_to} is before period_from ({period_from})", "period_order"
        )
    return period_from, period_to


def _parse_date(value: object) -> date:
    if type(value) is str and (m := _ISO_DAY.fullmatch(value)):
        # what strptime's first two formats read, when the values are in range
        y, mo, d, h, mi, s = m.groups()
        if h is None or (int(h) < 24 and int(mi) < 60 and int(s) < 60):
            try:
                return date(int(y), int(mo), int(d))
            except ValueError:
                pass  # the general path refuses it with its reason
    return _parse_any_date(value)


def _parse_any_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text("issued_on", value)
    if text is None:
        raise RowError("issued_on", "is empty", "required")
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()  # noqa: DTZ007 - a date, no zone
        except ValueError:
            continue
    raise RowError("issued_on", f"{text!r} is not a date the platform writes", "date_format")


def read_row(line: int, values: list[object], index: dict[str, int]) -> PlatformRow:
    """One data row -> PlatformRow, or RowError naming the field and why."""
    n = len(values)
    cells = {f: (values[i] if i < n else None) for f, i in index.items()}
    key = _key(cells)
    status_text = _text("platform_status", cells.get("platform_status")) or "正常"
    status = PLATFORM_STATUS.get(status_text)
    if status is None:
        raise RowError("platform_status", f"{status_text!r} is not a known status", "status")
    seller = _text("seller_code", cells.get("seller_code"))
    buyer = _text("buyer_code", cells.get("buyer_code"))
    return PlatformRow(  # positional, in the order the fields are checked
        line,
        key,
        _date(cells.get("issued_on")),
        _money("amount", cells.get("amount")),
        _money("tax", cells.get("tax")),
        _money("total", cells.get("total")),
        seller.upper() if seller else None,
        buyer.upper() if buyer else None,
        status,
        _raw(values),
    )


class RowReader(Protocol):
    def __call__(self, line: int, values: list[object]) -> PlatformRow: ...


# A platform status cell as it usually stands (no surrounding spaces) -> our status; an empty
# one reads as 正常, as `read_row` reads it.
_STATUS_CELLS = {**PLATFORM_STATUS, **dict.fromkeys(EMPTY, "normal")}
# An issue date as it usually stands: what `_parse_date` reads without strptime, the time (if
# any) in range; the date part itself is checked (and cached) on its own.
_PLAIN_DAY = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?: (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?"
)
_DAY_CACHE = 4096
_new_row = tuple.__new__


class _UnusualCell(Exception):
    """A cell `row_reader` leaves to `read_row`."""


def row_reader(index: dict[str, int]) -> RowReader:
    """`read_row` for one header's columns, faster: cells in the usual shapes are read in one
    pass (the positions looked up once, an issue date read once per day); a row with any cell
    in another shape, or too short, is read by `read_row` itself, so the value or the refusal
    is always the one `read_row` gives."""
    i_digital, i_number, i_code = (index.get(f) for f in ("digital_number", "number", "code"))
    i_status, i_seller, i_buyer = (
        index.get(f) for f in ("platform_status", "seller_code", "buyer_code")
    )
    i_day, i_amount, i_tax, i_total = (index[f] for f in REQUIRED)
    width = max(index.values()) + 1
    days: dict[str, date] = {}
    plain_day, plain_money, grouped_money = (
        _PLAIN_DAY.fullmatch,
        _PLAIN_MONEY.fullmatch,
        _GROUPED_MONEY.fullmatch,
    )
    digital_key, statuses, empty, no_cell = _DIGITAL_KEY.fullmatch, _STATUS_CELLS, EMPTY, _NO_CELL

    def money(value: object) -> Decimal | None:
        if type(value) is str:
            if plain_money(value):
                return Decimal(value)
            if grouped_money(value):
                return Decimal(value.replace(",", ""))
        return None

    def party(cell: object) -> str | None:
        if type(cell) is not str:
            raise _UnusualCell
        code = cell.strip()
        return None if code in empty else code.upper()

    def read(line: int, values: list[object]) -> PlatformRow:
        if len(values) < width or i_digital is None:
            return read_row(line, values, index)
        key = values[i_digital]
        if (
            type(key) is not str
            or not digital_key(key)
            or (i_number is not None and values[i_number] not in no_cell)
            or (i_code is not None and values[i_code] not in no_cell)
        ):
            return read_row(line, values, index)
        status = "normal" if i_status is None else statuses.get(values[i_status])  # type: ignore[call-overload]
        try:
            seller = None if i_seller is None else party(values[i_seller])
            buyer = None if i_buyer is None else party(values[i_buyer])
        except _UnusualCell:
            return read_row(line, values, index)
        cell = values[i_day]
        if status is None or type(cell) is not str or not plain_day(cell):
            return read_row(line, values, index)
        day = days.get(cell[:10])
        if day is None:
            try:
                day = date(int(cell[:4]), int(cell[5:7]), int(cell[8:10]))
            except ValueError:
                return read_row(line, values, index)  # its refusal, with its reason
            if not FIRST_DAY <= day <= LAST_DAY:
                return read_row(line, values, index)
            if len(days) >= _DAY_CACHE:
                days.clear()
            days[cell[:10]] = day
        amount, tax, total = money(values[i_amount]), money(values[i_tax]), money(values[i_total])
        if amount is None or tax is None or total is None:
            return read_row(line, values, index)
        return _new_row(
            PlatformRow,
            (line, key, day, amount, tax, total, seller, buyer, status, _raw(values)),
        )

    return read


def _raw(values: list[object]) -> str:
    try:
        return "\t".join(values)  # type: ignore[arg-type]  # CSV cells are all text
    except TypeError:
        return "\t".join("" if v is None else str(v) for v in values)
