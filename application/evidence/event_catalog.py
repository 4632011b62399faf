"""The project's own stored event topics, and the only ones a bundle verifier will decode.

The library resolves a stored topic by importing the module it names. A bundle comes from
outside, so its topics (and the aggregate topic inside each created event) are looked up here
first: a topic that is not one of ours is reported, never imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from application.topics import events_of


class UnknownTopicError(ValueError):
    """A topic (of an event, or of the aggregate a created event names) is not one of ours."""


@dataclass(frozen=True)
class EventCatalog:
    events: dict[str, type]  # stored event topic -> class
    aggregates: dict[str, type]  # aggregate topic -> class

    @classmethod
    def of(cls, aggregates: Iterable[type]) -> EventCatalog:
        found = list(aggregates)
        events: dict[str, type] = {}
        for aggregate in found:
            for event in events_of(aggregate):
                events[vars(event)["TOPIC"]] = event
        return cls(events, {vars(a)["TOPIC"]: a for a in found})

    def check_event(self, topic: str) -> type:
        try:
            return self.events[topic]
        except KeyError:
            raise UnknownTopicError(
                f"event topic {topic[:120]!r} is not one of fapiao-ledger's event topics"
            ) from None

    def check_aggregate(self, topic: str) -> type:
        try:
            return self.aggregates[topic]
        except KeyError:
            raise UnknownTopicError(
                f"aggregate topic {topic[:120]!r} is not one of fapiao-ledger's aggregates"
            ) from None
