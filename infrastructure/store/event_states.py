"""Event states encoded with orjson to exactly the bytes the library's mapper stores.

The library's JSONTranscoder writes compact JSON (`,` and `:`), UTF-8 unescaped, and each value
of a registered type as `{"_type_": name, "_data_": ...}`. orjson writes the same for the same
values, several times faster, calling back for the registered types (dates and times passed
through to that callback). The batch issuance path uses it; tests/integration/test_batch_issue.py
compares its rows with the library's byte for byte.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, Transcoding

from application.ports import StateEncoder

# Not part of an event's state: the row's own columns.
_ROW_COLUMNS = ("originator_id", "originator_version")


class OrjsonStateEncoder:
    """The mapper's state bytes, by orjson. Only for a plain JSON mapper (no compressor, no
    cipher); never given a UUID value (orjson writes UUIDs itself, not as `uuid_hex`)."""

    def __init__(self, types: dict[type, Transcoding]) -> None:
        self._types = types

    def _default(self, obj: Any) -> dict[str, Any]:
        transcoding = self._types.get(type(obj))
        if transcoding is None:
            raise TypeError(f"no transcoding for {type(obj)}")
        return {"_type_": transcoding.name, "_data_": transcoding.encode(obj)}

    def state(self, attributes: dict[str, Any], class_version: int) -> bytes:
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
