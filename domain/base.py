"""What every event of every aggregate carries: who did it, through what, and when it happened.

The library's `timestamp` is the writer's clock; `occurred_at` is the business time of the fact,
passed in explicitly; the database adds `recorded_at` (DESIGN.md 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from eventsourcing.domain import AggregateEvent

from domain.errors import InvalidCommandFieldError


class Source(StrEnum):
    API = "api"
    CLI = "cli"
    CALLBACK = "callback"
    RECONCILIATION = "reconciliation"
    TIMER = "timer"
    DEMO = "demo"
    CONSOLE = "console"


@dataclass(frozen=True)
class Provenance:
    """Actor, source and business time of a command, stamped onto each event it causes."""

    actor: str
    source: Source
    occurred_at: datetime

    def __post_init__(self) -> None:
        if not self.actor:
            raise InvalidCommandFieldError("actor", "must not be empty", rule="required")
        if self.occurred_at.tzinfo is None:
            raise InvalidCommandFieldError("occurred_at", "must carry a time zone", rule="aware")

    def fields(self) -> dict[str, Any]:
        return {"actor": self.actor, "source": self.source.value, "occurred_at": self.occurred_at}


class LedgerEvent(AggregateEvent):
    """Base of every stored event: `actor`, `source` and `occurred_at` (aware) on each."""

    actor: str
    source: str
    occurred_at: datetime
