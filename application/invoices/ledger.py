"""InvoiceLedger: the write side. Load, decide, save (events plus receipt), return the position.

Each command runs under optimistic concurrency: a conflict reloads and decides again, a bounded
number of times. A command with an Idempotency-Key saves a `CommandReceipt` in the same `save()`,
so a repeat returns the first answer and a concurrent duplicate writes nothing.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import BaseAggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from application.command_keys import take
from application.dto import CommandResult, EventView, Idempotency, warnings_as_dicts
from application.invoices.batch_issue import issue_batch
from application.invoices.lifecycle import LifecycleCommand
from application.ports import Clock, EventLog, StateEncoder, StoredEventRow
from application.serialization import DateAsISO
from application.service_errors import (
    ApplicationError,
    CommandInProgressError,
    ConcurrencyConflictError,
    IdempotencyKeyReusedError,
    InvoiceAlreadyExistsError,
    InvoiceNotFoundError,
)
from domain.base import LedgerEvent, Provenance
from domain.calendar import SHANGHAI
from domain.errors import DomainError, InvalidFieldError
from domain.idempotency import CommandReceipt, receipt_id
from domain.invoices.identity import FieldWarning, invoice_id, parse_canonical_key
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import InvoiceDraft, validate_draft

MAX_ATTEMPTS = 5
# How long a command keeps deciding again when others change what it changes (seconds).
COMMAND_DEADLINE = 10.0
# Commands naming the same thing take turns in this process (striped locks, bounded memory).
_TURNS = [threading.Lock() for _ in range(64)]


def _turn(subject: object) -> AbstractContextManager[object]:
    if subject is None:
        return nullcontext()
    return _TURNS[hash(subject) % len(_TURNS)]


@dataclass(frozen=True)
class Outcome:
    """A command's answer: the log position it reached, its receipt body, and whether it
    repeats the first answer to its Idempotency-Key."""

    position: int
    body: dict[str, Any]
    replayed: bool


# An event's attributes that are not its data: identity, the writer's clock, provenance.
NOT_DATA = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "originator_topic",
        "actor",
        "source",
        "occurred_at",
    }
)

Aggregate = BaseAggregate[UUID]
Decision = tuple[list[Aggregate], Invoice, list[FieldWarning]]
# (log position, domain event, the aggregate saved with it or None): what listeners hear.
SavedEvent = tuple[int, Any, Any]


class InvoiceLedger(Application[UUID]):
    """The one event-sourced application of a process; its tables are named after `name`."""

    name = "Ledger"
    # The batch path's encoder of event states (the bootstrap sets a fast one; None: the mapper).
    state_encoder: StateEncoder | None = None

    def __init__(self, env: dict[str, str], clock: Clock) -> None:
        super().__init__(env)
        self.clock = clock
        self._listeners: list[Callable[[int], None]] = []
        self._event_listeners: list[Callable[[list[SavedEvent]], None]] = []

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    @property
    def event_log(self) -> EventLog:
        return cast(EventLog, self.recorder)

    def on_saved(self, listener: Callable[[int], None]) -> None:
        """Call `listener(last_position)` after every save in this process (worker wake-up)."""
        self._listeners.append(listener)

    def on_events(self, listener: Callable[[list[SavedEvent]], None]) -> None:
        """Call `listener(saved)` with each save's events once committed (structured logs)."""
        self._event_listeners.append(listener)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Any]:
        recordings: list[Any] = super()._record(processing_event)
        if recordings and self._event_listeners:
            aggregates = processing_event.aggregates
            saved = [
                (r.notification.id, r.domain_event, aggregates.get(r.domain_event.originator_id))
                for r in recordings
            ]
            for listener in self._event_listeners:
                listener(saved)
        return recordings

    def _notify(self, recordings: list[Any]) -> None:
        super()._notify(recordings)
        if recordings and self._listeners:
            last = max(r.notification.id for r in recordings)
            for listener in self._listeners:
                listener(last)

    def today(self) -> date:
        """The Beijing business date: what "not in the future" is checked against."""
        return self.clock.now().astimezone(SHANGHAI).date()

    # ---- issuing ---------------------------------------------------------------------------

    def issue_invoice(
        self,
        tenant_id: str,
        draft: InvoiceDraft,
        by: Provenance,
        idempotency: Idempotency | None = None,
    ) -> CommandResult:
        """Validate and record a new invoice; the same tenant + key twice is a conflict."""
        facts, warnings = validate_draft(draft, self.today())

        def decide() -> Decision:
            invoice = Invoice.issue(tenant_id, facts, by)
            return [invoice], invoice, warnings

        return self._execute(tenant_id, by, idempotency, decide, new_key=facts.key.canonical)

    def issue_invoices(
        self,
        tenant_id: str,
        drafts: Sequence[InvoiceDraft],
        by: Provenance,
        idempotency: Idempotency | None = None,
    ) -> list[CommandResult]:
        """Issue many invoices in one atomic save: all are recorded, or none. The rows are
        the library's, written without its per-aggregate work (`batch_issue`)."""
        idempotency = idempotency if idempotency is not None else take(tenant_id)
        if idempotency is not None and (replay := self._replay_batch(tenant_id, idempotency)):
            return replay
        return issue_batch(self, tenant_id, drafts, by, idempotency)

    def _replay_batch(self, tenant_id: str, idempotency: Idempotency) -> list[CommandResult]:
        found = self._receipt(tenant_id, idempotency)
        if found is None:
            return []
        body, _ = found
        return [
            CommandResult.from_receipt(r, self.event_log.position_of(UUID(r["invoice_id"]), 1) or 0)
            for r in body["results"]
        ]

    # ---- lifecycle -------------------------------------------------------------------------

    def change_invoice(
        self,
        tenant_id: str,
        invoice_id: UUID,
        command: LifecycleCommand,
        by: Provenance,
        idempotency: Idempotency | None = None,
    ) -> CommandResult:
        """Apply one lifecycle step (`application/invoices/lifecycle.py` declares each)."""
        return self._change(
            tenant_id, invoice_id, by, idempotency, lambda inv: command.apply(inv, by)
        )

    def expire_acknowledgement_window(
        self,
        tenant_id: str,
        invoice_id: UUID,
        by: Provenance,
        attempt: int,
        window: timedelta,
        due_at: datetime,
    ) -> CommandResult:
        """The timer's verdict; refused (InvalidTransitionError) if the wait already ended."""
        return self._change(
            tenant_id,
            invoice_id,
            by,
            None,
            lambda inv: inv.expire_acknowledgement_window(by, attempt, window, due_at),
        )

    def apply_to_invoice(
        self, tenant_id: str, invoice_id: UUID, by: Provenance, action: Callable[[Invoice], None]
    ) -> CommandResult:
        """Run a decision made elsewhere in the application (reconciliation) with retries."""
        return self._change(tenant_id, invoice_id, by, None, action)

    # ---- reads from the event store --------------------------------------------------------

    def get_invoice_state(self, tenant_id: str, invoice_id: UUID) -> Invoice:
        """The aggregate replayed from its events (the auditor's truth, not the projection)."""
        try:
            invoice = cast(Invoice, self.repository.get(invoice_id))
        except AggregateNotFoundError:
            raise InvoiceNotFoundError(invoice_id) from None
        if not isinstance(invoice, Invoice) or invoice.tenant_id != tenant_id:
            raise InvoiceNotFoundError(invoice_id)
        return invoice

    def resolve_invoice_id(self, tenant_id: str, ref: str) -> UUID:
        """Accept a uuid or a canonical invoice key (`20 digits` or `code:number`); an unknown
        key is not found under that key."""
        try:
            return UUID(ref)
        except ValueError:
            pass
        try:
            found = invoice_id(tenant_id, parse_canonical_key(ref))
        except InvalidFieldError:
            raise InvoiceNotFoundError(ref) from None
        if not self._exists(found):  # say so by the key the caller sent, not a derived id
            raise InvoiceNotFoundError(ref)
        return found

    def get_invoice_as_of(
        self, tenant_id: str, invoice_id: UUID, at: datetime
    ) -> tuple[Invoice | None, int]:
        """What the ledger knew at `at`: the invoice replayed from the events recorded at or
        before then (the database's `recorded_at`), and that version (0: not yet known)."""
        self.get_invoice_state(tenant_id, invoice_id)
        known = [
            r.originator_version
            for r in self.event_log.select_stream(invoice_id)
            if r.recorded_at <= at
        ]
        if not known:
            return None, 0
        version = max(known)
        invoice = cast(Invoice, self.repository.get(invoice_id, version=version))
        return invoice, version

    def list_invoice_events(self, tenant_id: str, invoice_id: UUID) -> list[EventView]:
        """Every event of one invoice, oldest first, decoded, with position and recorded_at."""
        self.get_invoice_state(tenant_id, invoice_id)
        return self.event_views(self.event_log.select_stream(invoice_id))

    def event_views(self, rows: Sequence[StoredEventRow]) -> list[EventView]:
        """Stored rows (already read) decoded into readable events."""
        views = []
        for row in rows:
            event = cast(LedgerEvent, self.mapper.to_domain_event(row))  # type: ignore[arg-type]
            data = {k: _jsonable(v) for k, v in vars(event).items() if k not in NOT_DATA}
            views.append(
                EventView(
                    position=row.position,
                    version=row.originator_version,
                    type=type(event).__name__,
                    topic=row.topic,
                    recorded_at=row.recorded_at.astimezone(UTC).isoformat(),
                    actor=event.actor,
                    source=event.source,
                    occurred_at=event.occurred_at.isoformat(),
                    data=data,
                )
            )
        return views

    # ---- the command loop ------------------------------------------------------------------

    def _change(
        self,
        tenant_id: str,
        invoice_id: UUID,
        by: Provenance,
        idempotency: Idempotency | None,
        action: Callable[[Invoice], None],
    ) -> CommandResult:
        def decide() -> Decision:
            invoice = self.get_invoice_state(tenant_id, invoice_id)
            action(invoice)
            return [invoice], invoice, []

        return self._execute(tenant_id, by, idempotency, decide, serialize=invoice_id)

    def _execute(
        self,
        tenant_id: str,
        by: Provenance,
        idempotency: Idempotency | None,
        decide: Callable[[], Decision],
        new_key: str | None = None,
        serialize: object = None,
    ) -> CommandResult:
        def decision() -> tuple[list[Aggregate], dict[str, Any]]:
            aggregates, invoice, warnings = decide()
            result = CommandResult(
                invoice.id,
                invoice.invoice_key,
                invoice.status.value,
                invoice.version,
                0,
                warnings_as_dicts(warnings),
            )
            made[:] = [invoice.id]
            return aggregates, result.receipt_body()

        made: list[UUID] = []

        def already_issued() -> None:
            if new_key is not None and made and self._exists(made[0]):
                raise InvoiceAlreadyExistsError([new_key])

        outcome = self.run_once(
            tenant_id,
            by,
            decision,
            idempotency=idempotency,
            serialize=serialize,
            on_conflict=already_issued,
        )
        return replace(
            CommandResult.from_receipt(outcome.body, outcome.position), replayed=outcome.replayed
        )

    def run_once(
        self,
        tenant_id: str,
        by: Provenance,
        decide: Callable[[], tuple[list[Aggregate], dict[str, Any]]],
        *,
        idempotency: Idempotency | None = None,
        serialize: object = None,
        on_conflict: Callable[[], None] | None = None,
        deadline: float = COMMAND_DEADLINE,
    ) -> Outcome:
        """The one command loop: decide, save the aggregates (with the Idempotency-Key's receipt
        in the same save), and on a version conflict decide again after a jittered pause, until
        `deadline` seconds have passed.

        The key is `idempotency`, else the enclosing request's (`application.command_keys`).
        Its receipt is looked for before each decision and again after any refusal or conflict,
        so a concurrent duplicate gets the first answer, never a false failure; while the first
        has not committed it waits its turn, and past the deadline it is told the command is in
        progress (409 with Retry-After). `serialize` names what the command changes (a case, a
        year's counter): commands on it in this process take turns instead of colliding.
        `decide` returns the aggregates to save and the answer (JSON) the receipt keeps."""
        idem = idempotency if idempotency is not None else take(tenant_id)
        ends = time.monotonic() + deadline
        attempt = 0
        while True:
            attempt += 1
            with _turn(serialize):
                if idem is not None and (found := self._receipt(tenant_id, idem)):
                    return Outcome(found[1], found[0], True)
                try:
                    aggregates, body = decide()
                except (ApplicationError, DomainError):
                    if idem is not None and (found := self._receipt(tenant_id, idem)):
                        return Outcome(found[1], found[0], True)  # the first one did it
                    raise
                if idem is not None:  # last: its position is the save's last
                    aggregates.append(
                        CommandReceipt.record(tenant_id, idem.key, idem.fingerprint, body, by)
                    )
                try:  # with FAPIAO_GROUP_COMMIT, in one transaction with concurrent ones
                    recordings = self.save(*aggregates, group_commit=True)
                except IntegrityError:
                    if idem is not None and (found := self._receipt(tenant_id, idem)):
                        return Outcome(found[1], found[0], True)
                    if on_conflict is not None:
                        on_conflict()
                else:
                    return Outcome(max(r.notification.id for r in recordings), body, False)
            if time.monotonic() >= ends:
                if idem is not None:
                    raise CommandInProgressError(idem.key)
                raise ConcurrencyConflictError(attempt)
            pause = min(0.05, 0.001 * 2 ** min(attempt, 6))
            time.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only

    def _receipt(
        self, tenant_id: str, idempotency: Idempotency
    ) -> tuple[dict[str, Any], int] | None:
        """The first answer to this Idempotency-Key and its position, if there was one."""
        rid = receipt_id(tenant_id, idempotency.key)
        try:
            receipt = cast(CommandReceipt, self.repository.get(rid))
        except AggregateNotFoundError:
            return None
        if receipt.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReusedError(idempotency.key)
        return receipt.response, self.event_log.position_of(rid, 1) or 0

    def _replay(self, tenant_id: str, idempotency: Idempotency) -> CommandResult | None:
        found = self._receipt(tenant_id, idempotency)
        return None if found is None else CommandResult.from_receipt(*found)

    def _exists(self, aggregate_id: UUID) -> bool:
        return self.event_log.position_of(aggregate_id, 1) is not None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
