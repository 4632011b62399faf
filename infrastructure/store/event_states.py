"""Event states encoded with orjson to exactly the bytes the library's mapper stores.

The library's JSONTranscoder writes compact JSON (`,` and `:`), UTF-8 unescaped, and each value
of a registered type as `{"_type_": name, "_data_": ...}`. orjson writes the same for the same
values, several times faster. An event's own values of a registered type are wrapped here, in
one pass: a datetime in UTC and a date are left for orjson to write in ISO form (the bytes of
`isoformat()`, several times faster than it), a Decimal is `str()`, any other type its
transcoding's `encode`. Lists and dicts of plain JSON values pass as they are; a state holding
anything else nested (a Decimal in a list, say) is encoded calling back for the registered
types instead (dates and times passed through to that callback). The batch issuance path uses
it; tests/integration/test_batch_issue.py compares its rows with the library's byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Transcoding,
)

from application.ports import StateEncoder
from application.serialization import DateAsISO

# Not part of an event's state: the row's own columns.
_ROW_COLUMNS = ("originator_id", "originator_version")
# Written by orjson exactly as the stdlib's json writes them (bool before int: a subclass).
_PLAIN = frozenset({str, int, bool, type(None)})


def _plain_json(value: Any) -> bool:
    """Whether `value` is made of str, int, bool, None, lists and str-keyed dicts only."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is list:
        for v in value:
            if type(v) not in _PLAIN and not _plain_json(v):
                return False
        return True
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) not in _PLAIN and not _plain_json(v)):
                return False
        return True
    return False


class OrjsonStateEncoder:
    """The mapper's state bytes, by orjson. Only for a plain JSON mapper (no compressor, no
    cipher); never given a UUID value (orjson writes UUIDs itself, not as `uuid_hex`)."""

    def __init__(self, types: dict[type, Transcoding]) -> None:
        self._types = types
        self._wrap: dict[type, Callable[[Any], Any]] = {}
        for kind, transcoding in types.items():
            name = transcoding.name
            if kind is UUID:
                continue  # refused below
            if kind is datetime and type(transcoding) is DatetimeAsISO:
                self._wrap[kind] = self._datetime(name, transcoding)
            elif kind is date and type(transcoding) is DateAsISO:
                self._wrap[kind] = lambda v, n=name: {"_type_": n, "_data_": v}
            elif kind is Decimal and type(transcoding) is DecimalAsStr:
                self._wrap[kind] = lambda v, n=name: {"_type_": n, "_data_": str(v)}
            else:
                self._wrap[kind] = lambda v, n=name, t=transcoding: {
                    "_type_": n,
                    "_data_": t.encode(v),
                }

    @staticmethod
    def _datetime(name: str, transcoding: Transcoding) -> Callable[[Any], Any]:
        def wrap(value: datetime) -> dict[str, Any]:
            # orjson writes an aware UTC datetime as isoformat() does; any other zone by the
            # transcoding itself.
            data = value if value.tzinfo is UTC else transcoding.encode(value)
            return {"_type_": name, "_data_": data}

        return wrap

    def _default(self, obj: Any) -> dict[str, Any]:
        transcoding = self._types.get(type(obj))
        if transcoding is None:
            raise TypeError(f"no transcoding for {type(obj)}")
        return {"_type_": transcoding.name, "_data_": transcoding.encode(obj)}

    def state(self, attributes: dict[str, Any], class_version: int) -> bytes:
        wrap, plain = self._wrap, _PLAIN
        state: dict[str, Any] = {}
        for key, value in attributes.items():
            kind = type(value)
            if kind in plain:
                state[key] = value
            elif (wrapper := wrap.get(kind)) is not None:
                state[key] = wrapper(value)
            elif kind is UUID:
                if key in _ROW_COLUMNS:
                    state[key] = value  # dropped below
                    continue
                raise TypeError("a UUID in an event's state: encode it with the mapper")
            elif _plain_json(value):
                state[key] = value
            else:
                return self._state_by_callback(attributes, class_version)
        for column in _ROW_COLUMNS:
            del state[column]
        if class_version > 1:
            state["class_version"] = class_version
        return orjson.dumps(state)

    def _state_by_callback(self, attributes: dict[str, Any], class_version: int) -> bytes:
        state = dict(attributes)
        for column in _ROW_COLUMNS:
            del state[column]
        if class_version > 1:
            state["class_version"] = class_version
        if any(type(v) is UUID for v in state.values()):
            raise TypeError("a UUID in an event's state: encode it with the mapper")
        return orjson.dumps(state, default=self._default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def fast_state_encoder(mapper: Mapper[Any]) -> StateEncoder | None:
    """An orjson encoder for this mapper's states, or None where its bytes would differ."""
    transcoder = mapper.transcoder
    if not isinstance(transcoder, JSONTranscoder) or mapper.compressor or mapper.cipher:
        return None
    return OrjsonStateEncoder(transcoder.types)
