"""What every case command shares: the case's number from its year's counter, the answer it
gives, and a save that decides again on a version conflict (bounded, jittered)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import IntegrityError

from application.invoices.ledger import MAX_ATTEMPTS, InvoiceLedger
from application.service_errors import ApplicationError, ConcurrencyConflictError
from domain.base import Provenance
from domain.remedies.case_numbering import CaseNumbering, counter_id


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


def save_with_retries(
    ledger: InvoiceLedger,
    decide: Callable[[], list[BaseAggregate[UUID]]],
    attempts: int = MAX_ATTEMPTS,
) -> int:
    """Decide and save atomically; on a version conflict decide again, after a jittered pause
    that grows with each try (bounded)."""
    for attempt in range(1, attempts + 1):
        aggregates = decide()
        try:
            recordings = ledger.save(*aggregates)
        except IntegrityError:
            time.sleep(random.uniform(0.001, 0.01) * attempt)  # noqa: S311 - jitter only
            continue
        return max(r.notification.id for r in recordings)
    raise ConcurrencyConflictError(attempts)


# A year's counter is one hot aggregate while many cases open at once: retry it harder.
NUMBERING_ATTEMPTS = 30
