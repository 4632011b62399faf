"""What every case command shares: the case's number from its year's counter, the answer it
gives, and a save that decides again on a version conflict (bounded, jittered)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import BaseAggregate

from application.invoices.ledger import InvoiceLedger
from application.service_errors import ApplicationError
from domain.base import Provenance
from domain.remedies.case_numbering import CaseNumbering, counter_id


def numbering(ledger: InvoiceLedger, tenant_id: str, prefix: str) -> UUID:
    """What case drafts of this tenant and prefix take turns on: this year's counter."""
    return counter_id(tenant_id, prefix, ledger.today().year)


class CaseNotFoundError(ApplicationError):
    def __init__(self, ref: object) -> None:
        super().__init__(f"case {ref} not found")


@dataclass(frozen=True)
class CaseResult:
    case_id: UUID
    number: str
    status: str
    position: int
    case: Any = None  # the case as saved, so callers need not load it again


def next_number(
    ledger: InvoiceLedger, tenant_id: str, prefix: str, case_id: UUID, by: Provenance
) -> tuple[CaseNumbering, str]:
    """The counter (loaded or started) with the next number assigned to `case_id`."""
    year = ledger.today().year
    try:
        counter = cast(CaseNumbering, ledger.repository.get(counter_id(tenant_id, prefix, year)))
    except AggregateNotFoundError:
        counter = CaseNumbering.start(tenant_id, prefix, year, by)
    return counter, counter.assign(by, case_id)


def save_case(
    ledger: InvoiceLedger,
    tenant_id: str,
    by: Provenance,
    decide: Callable[[], tuple[list[BaseAggregate[UUID]], Any]],
    serialize: object,
) -> CaseResult:
    """Decide and save a case command atomically through the ledger's one command loop
    (`InvoiceLedger.run_once`): retried on conflicts until its deadline, commands on the same
    `serialize` (the case, or the year's counter) taking turns in this process, and a repeated
    Idempotency-Key answered with the case as the first request left it."""
    made: list[Any] = []

    def decision() -> tuple[list[BaseAggregate[UUID]], dict[str, Any]]:
        aggregates, case = decide()
        made[:] = [case]
        return aggregates, {"case_id": str(case.id), "version": case.version}

    outcome = ledger.run_once(tenant_id, by, decision, serialize=serialize)
    if outcome.replayed or not made:
        body = outcome.body
        case: Any = ledger.repository.get(UUID(body["case_id"]), version=body["version"])
    else:
        case = made[0]
    return CaseResult(case.id, case.number, case.status, outcome.position, case)
