"""Stored events to domain events for the projection worker: the library mapper's result, faster.

`Mapper.to_domain_event` parses the state with the standard `json` module, calling its object
hook for every JSON object, and resolves the topic and the id convertor on every event. Here
the state is parsed by orjson and the objects the library's `JSONTranscoder` encoded
(`{"_type_": name, "_data_": data}`) are decoded by the same registered transcodings,
innermost first as the object hook does; the topic's class, id convertor and class version
are looked up once per topic; upcasting runs as the mapper runs it. The event is built the way
the mapper builds it (its `__dict__` set), so it is the same object.

Anything out of the ordinary goes to the mapper itself: a cipher or compressor, another
transcoder, and any state this path cannot decode (orjson refuses what `json` accepts, such as
NaN or integers beyond 64 bits) - so an undecodable event fails with the library's own error.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent, find_id_convertor
from eventsourcing.utils import resolve_topic


class EventDecoder:
    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        transcoder = mapper.transcoder
        self.fast = (
            mapper.cipher is None
            and mapper.compressor is None
            and isinstance(transcoder, JSONTranscoder)
            and type(transcoder).decode is JSONTranscoder.decode
            and type(transcoder)._decode_obj is JSONTranscoder._decode_obj  # noqa: SLF001
        )
        self._decoders: dict[str, Callable[[Any], Any]] = (
            {name: t.decode for name, t in transcoder.names.items()}
            if isinstance(transcoder, JSONTranscoder)
            else {}
        )
        self._classes: dict[tuple[str, type], tuple[type, Callable[[Any], Any], int]] = {}

    def decode(self, originator_id: UUID, originator_version: int, topic: str, state: bytes) -> Any:
        """The domain event of one stored event (the library's error if it cannot be)."""
        if self.fast:
            try:
                return self._decode(originator_id, originator_version, topic, state)
            except Exception:  # noqa: BLE001, S110 - the mapper decides, and names the error
                pass
        return self.mapper.to_domain_event(
            StoredEvent(originator_id, originator_version, topic, state)
        )

    def _decode(
        self, originator_id: UUID, originator_version: int, topic: str, state: bytes
    ) -> Any:
        key = (topic, type(originator_id))
        found = self._classes.get(key)
        if found is None:
            cls = resolve_topic(topic)
            found = (
                cls,
                find_id_convertor(cls, cast(Hashable, type(originator_id))),
                getattr(cls, "class_version", 1),
            )
            self._classes[key] = found
        cls, id_convertor, class_version = found
        event_state = orjson.loads(state)
        if type(event_state) is not dict:
            raise TypeError("the state is not an object")
        event_state = self._objects(event_state)
        event_state["originator_id"] = id_convertor(originator_id)
        event_state["originator_version"] = originator_version
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        event: Any = object.__new__(cls)
        object.__setattr__(event, "__dict__", event_state)
        return event

    def _objects(self, obj: dict[str, Any]) -> Any:
        """`obj` with its encoded objects decoded, innermost first (the object hook's order)."""
        decoders = self._decoders
        for k, v in obj.items():  # (replacing values, never adding keys, while iterating)
            kind = type(v)
            if kind is dict:
                if len(v) == 2 and "_type_" in v and "_data_" in v:
                    data = v["_data_"]
                    if type(data) is not dict and type(data) is not list:  # the usual leaf
                        obj[k] = decoders[v["_type_"]](data)
                        continue
                obj[k] = self._objects(v)
            elif kind is list:
                obj[k] = self._items(v)
        if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
            return decoders[obj["_type_"]](obj["_data_"])
        return obj

    def _items(self, items: list[Any]) -> list[Any]:
        out = []
        for v in items:
            kind = type(v)
            if kind is dict:
                v = self._objects(v)
            elif kind is list:
                v = self._items(v)
            out.append(v)
        return out
