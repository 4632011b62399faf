"""orjson for the evidence's JSON: writing canonical bytes and reading bundle files faster.

`write` gives the bytes canonical_json's standard-library encoder gives for a plain value
(orjson with sorted keys; tests/unit/test_canonical_json.py holds them equal, and equal to the
rfc8785 package's), and `install` makes canonical_json use it. `read` reads JSON as
`json.loads` does, to the same values, and fails as it does (the same test holds them equal).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from application.evidence import canonical_json


def write(value: Any) -> bytes:
    """A plain value's canonical bytes (orjson's TypeError for what it refuses)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def install() -> None:
    """canonical_json writes with `write` from now on (the bootstrap and the verifier call it)."""
    canonical_json.use_writer(write)


def read(data: bytes | str) -> Any:
    """JSON as `json.loads` reads it (and fails, with its message): orjson reads the bytes it
    can, to the same values; the rest (NaN, lone surrogates, other encodings, text with 19
    digits in a row, where orjson would make an integer past 64 bits a float, and str) goes
    to `json`."""
    if isinstance(data, bytes) and _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))  # 0-9 -> 0
_NINETEEN_DIGITS = b"0" * 19
