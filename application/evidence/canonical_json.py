"""RFC 8785 (JCS) bytes at C speed: the standard library's JSON encoder (keys sorted, no ASCII
escaping, no spaces) writes exactly the bytes the rfc8785 package writes for the values a ledger
holds (strings, integers within +-(2**53 - 1), booleans, null, lists, and
objects whose string keys sort the same by code point as by UTF-16, i.e. hold no character above
U+FFFF); any other value (a float, a larger integer, such a key, a lone surrogate) is left to the
rfc8785 package, which writes it or raises as before. tests/unit/test_canonical_json.py
holds the two equal."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import rfc8785

_SAFE_INTEGER = 2**53 - 1
_LAST_BMP = "\uffff"


def dumps(value: Any) -> bytes:
    """The RFC 8785 serialization of `value`."""
    if _plain(value):
        try:
            return _encode(value)
        except NotPlainError:
            pass  # a lone surrogate: rfc8785 refuses it
    return rfc8785.dumps(value)


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


# A faster writer of plain values, installed by the infrastructure (`use_writer`; this layer
# names no JSON library but the standard one): for every plain value it writes the encoder's
# bytes or raises TypeError or ValueError (then the encoder is asked).
_writer: Callable[[Any], bytes] | None = None


def use_writer(writer: Callable[[Any], bytes] | None) -> None:
    """Write plain values with `writer` (None: the standard library's encoder alone)."""
    global _writer
    _writer = writer


def _encode(value: Any) -> bytes:
    if _writer is not None:
        try:
            return _writer(value)
        except (TypeError, ValueError):
            pass  # a lone surrogate, nesting past its limit, ...: the encoder decides
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError) as e:
        raise NotPlainError(str(e)) from None


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and (k.isascii() or max(k) <= _LAST_BMP) and _plain(v)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


class NotPlainError(ValueError):
    """The value holds something `plain` leaves to the slow path (a float, a tuple, ...)."""


def plain(value: Any) -> Any:
    """The value as the ledger's JSON holds it (times as ISO 8601, Decimals and UUIDs as
    strings, like application.invoices.ledger's `_jsonable`), in one walk that also checks it is
    plain (see the module's note); NotPlainError otherwise."""
    kind = type(value)  # the exact common types first; subclasses take the general path
    if kind is str or value is None or kind is bool:
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not (k.isascii() or max(k) <= _LAST_BMP):
                raise NotPlainError("key")
            out[k] = plain(v)
        return out
    if kind is int:
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return value
        raise NotPlainError("integer beyond 2**53")
    if kind is list:
        return [plain(v) for v in value]
    if kind is datetime or kind is date:
        return value.isoformat()
    if kind is Decimal or kind is UUID:
        return str(value)
    return _plain_general(value)


def _plain_general(value: Any) -> Any:
    if isinstance(value, str):
        return str.__str__(value)  # a str enum's value, as JSON holds it
    if isinstance(value, bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, int):
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return int(value)
        raise NotPlainError("integer beyond 2**53")
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not (k.isascii() or max(k) <= _LAST_BMP):
                raise NotPlainError("key")
            out[k] = plain(v)
        return out
    raise NotPlainError(type(value).__name__)


def dumps_pieces(value: Any) -> Iterator[bytes]:
    """`dumps(value)` a piece at a time: a dict's keys and a list's items (in a dict, or
    alone) one by one, so a large document is never one string of the encoder's chunks.
    NotPlainError (as the pieces go) where `dumps` would give a lone surrogate to rfc8785."""
    if not _plain(value):
        yield dumps(value)
        return
    yield from _pieces(value, 2)


def _pieces(value: Any, depth: int) -> Iterator[bytes]:
    """The encoder's bytes of a plain value, split at its first `depth` levels."""
    if depth and isinstance(value, dict) and value:
        for n, key in enumerate(sorted(value)):
            yield (b"," if n else b"{") + _encode(key) + b":"
            yield from _pieces(value[key], depth - 1)
        yield b"}"
    elif depth and isinstance(value, list) and value:
        for n, item in enumerate(value):
            yield b"," if n else b"["
            yield from _pieces(item, depth - 1)
        yield b"]"
    else:
        yield _encode(value)


def dumps_plain(value: Any) -> bytes:
    """RFC 8785 bytes of a value `plain` returned (NotPlainError for a lone surrogate)."""
    return _encode(value)


def loads(data: bytes) -> Any:
    """JSON back into plain values."""
    return json.loads(data)
