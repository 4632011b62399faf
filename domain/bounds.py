"""The limits every stored value keeps, shared by the domain, the application and the edge, so
both stores hold the same values (PostgreSQL refuses what SQLite would take) and no value can
break a projection later.

- Money: numeric(18,2) as stored: at most 16 digits before the point, two after.
- Times and dates: within years 2000-2100 (a documented window; aware datetimes only).
- Text: no control characters (C0 and DEL) except tab and newline (and carriage return) where
  text allows it; each field within its length.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

from domain.errors import InvalidFieldError

MAX_MONEY = Decimal("9999999999999999.99")  # numeric(18, 2)
MONEY_DIGITS = 18
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_POSITION = 2**53  # log positions, offsets and sizes: exact in JSON numbers and bigint

NAME_LENGTH = 200  # party, line and file names
CODE_LENGTH = 64  # codes, references, units
NOTE_LENGTH = 2000  # notes, reasons, remarks, messages
TEXT_LENGTH = 10_000  # any other string the edge accepts

SURROGATE_MESSAGE = "must be valid Unicode text (found the lone surrogate U+{:04X})"


class OutOfBoundsError(InvalidFieldError):
    rule = "bounds"


class ControlCharacterError(InvalidFieldError):
    rule = "control_characters"


# C0 controls and DEL, less those text may hold (one search, not a loop over characters).
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def control_character(value: str, multiline: bool = True) -> str | None:
    """The first control character in `value` that text may not hold, if any."""
    found = (_CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE).search(value)
    return None if found is None else found.group()


def lone_surrogate(value: str) -> str | None:
    """The first UTF-16 surrogate in `value`, if any: JSON's `\\ud800` (or the bytes ED A0 80)
    parse to one, but no store can encode it as UTF-8, so it is refused, not stored."""
    found = _SURROGATE.search(value)
    return None if found is None else found.group()


def all_clean(one_line: list[str], multiline: list[str]) -> bool:
    """Whether none of these texts holds a character `check_text` refuses: one search over
    each kind joined by a tab (allowed in both), before any check field by field."""
    joined = "\t".join(one_line)
    many = "\t".join(multiline)
    return not (
        _CONTROL_ONE_LINE.search(joined)
        or _CONTROL_MULTILINE.search(many)
        or _SURROGATE.search(joined)
        or _SURROGATE.search(many)
    )


def check_file_name(field: str, name: str) -> str:
    """The name a file is kept under: the last part of a path (a browser may send a whole
    path), refused rather than repaired when it holds control characters, is empty, `.`/`..`,
    or longer than NAME_LENGTH."""
    if control_character(name, multiline=False) is not None or lone_surrogate(name) is not None:
        raise ControlCharacterError(field, "the file name must not contain control characters")
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", "..") or len(base) > NAME_LENGTH:
        raise OutOfBoundsError(
            field,
            f"the file name must be a plain name of at most {NAME_LENGTH} characters",
            "file_name",
        )
    return base


def check_text(
    field: str, value: str, max_length: int = TEXT_LENGTH, multiline: bool = True
) -> str:
    """`value` if it is within `max_length` characters and holds no control character."""
    if len(value) > max_length:
        raise OutOfBoundsError(field, f"is longer than {max_length} characters", "max_length")
    bad = control_character(value, multiline)
    if bad is not None:
        raise ControlCharacterError(
            field, f"must not contain control characters (found U+{ord(bad):04X})"
        )
    surrogate = lone_surrogate(value)
    if surrogate is not None:
        raise InvalidFieldError(field, SURROGATE_MESSAGE.format(ord(surrogate)), "encoding")
    return value


def check_money(field: str, amount: Decimal) -> Decimal:
    """`amount` if it fits numeric(18,2) (the caller has quantized it to cents)."""
    if not amount.is_finite() or abs(amount) > MAX_MONEY:
        raise OutOfBoundsError(
            field, f"must be at most {MAX_MONEY} in absolute value (numeric(18,2))", "money_range"
        )
    return amount


def check_day(field: str, day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OutOfBoundsError(field, f"must be between {FIRST_DAY} and {LAST_DAY}", "date_range")
    return day


def check_time(field: str, at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidFieldError(field, "must carry a time zone offset", "timezone")
    try:
        inside = EARLIEST <= at <= LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise OutOfBoundsError(
            field, "must be between 2000-01-01 and 2100-12-31 (UTC)", "time_range"
        )
    return at
