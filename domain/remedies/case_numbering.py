"""Human case numbers (BL-2026-000001, TS-2026-000001): unique per tenant, gap-free per year.

A counter aggregate per (tenant, prefix, year) is saved in the same `save()` as the case it
numbers: a number exists only if its case does, and two concurrent cases collide on the
counter's version, so one retries with the next number.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance

NUMBERING_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:case-numbering:v1")
PREFIXES = ("BL", "TS", "LP")  # 补录 re-entry, 投诉 complaint, lost paper invoice


def counter_id(tenant_id: str, prefix: str, year: int) -> UUID:
    return uuid5(NUMBERING_NAMESPACE, f"{tenant_id}|{prefix}|{year}")


class CaseNumbering(BaseAggregate[UUID]):
    TOPIC = "fapiao.case_numbering"

    class Event(LedgerEvent):
        pass

    class Started(Event, AggregateCreated):
        """Numbering of `prefix` cases for `year` began for this tenant."""

        TOPIC = "fapiao.case_numbering.started.v1"
        tenant_id: str
        prefix: str
        year: int

        def apply(self, counter: CaseNumbering) -> None:
            counter.prefix, counter.year = self.prefix, self.year

    class NumberAssigned(Event):
        """`number` went to case `case_id`; the next one is number + 1."""

        TOPIC = "fapiao.case_numbering.number_assigned.v1"
        number: int
        case_id: UUID

        def apply(self, counter: CaseNumbering) -> None:
            counter.last = self.number

    def __init__(self) -> None:
        self.prefix = ""
        self.year = 0
        self.last = 0

    @classmethod
    def start(cls, tenant_id: str, prefix: str, year: int, by: Provenance) -> CaseNumbering:
        return cls._create(
            cls.Started,
            id=counter_id(tenant_id, prefix, year),
            **by.fields(),
            tenant_id=tenant_id,
            prefix=prefix,
            year=year,
        )

    def assign(self, by: Provenance, case_id: UUID) -> str:
        self.trigger_event(
            self.NumberAssigned, **by.fields(), number=self.last + 1, case_id=case_id
        )
        return f"{self.prefix}-{self.year}-{self.last:06d}"
