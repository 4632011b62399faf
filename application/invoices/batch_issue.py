"""Batch issuance: many new invoices recorded in one atomic insert, without the per-aggregate
work the library's `save()` does for them.

`Application.save(*invoices)` builds each invoice as an aggregate (its created event mutated
into an object, kept pending, collected again), encodes each event through the transcoder's
pure-Python JSON encoder, and wraps every row in `Recording` and `Notification` objects. A new
invoice needs none of that: its one event (`Invoice.issued_event`, the domain's own rules) is
encoded straight to the mapper's bytes by the ledger's `state_encoder` (orjson, set up by the
bootstrap; the mapper itself where there is none) and inserted with the receipt, if any,
through the recorder's one call (`EventLog.insert_rows`: the same function, table and lock).
The rows are the library's, byte for byte (tests/integration/test_batch_issue.py compares
them), so readers, projections and the seal cannot tell which path wrote them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from application.dto import CommandResult, Idempotency, warnings_as_dicts
from application.service_errors import ConcurrencyConflictError, InvoiceAlreadyExistsError
from domain.base import Provenance
from domain.errors import InvalidFieldError, ValidationFailedError
from domain.idempotency import CommandReceipt
from domain.invoices.identity import FieldWarning
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import InvoiceDraft, InvoiceFacts, validate_draft
from domain.invoices.status import InvoiceStatus

if TYPE_CHECKING:
    from application.invoices.ledger import InvoiceLedger, SavedEvent

_ISSUED_TOPIC = Invoice.Issued.TOPIC
_ISSUED_CLASS_VERSION = Invoice.Issued.class_version
_STATUS = InvoiceStatus.ISSUED.value  # what `Issued.apply` sets on every new invoice


def issue_batch(
    ledger: InvoiceLedger,
    tenant_id: str,
    drafts: Sequence[InvoiceDraft],
    by: Provenance,
    idempotency: Idempotency | None,
) -> list[CommandResult]:
    """Validate every draft (all broken rules reported at once), then record all the invoices
    and the receipt (when there is a key) in one insert, or none. The caller has looked for
    the receipt first; a store refusal (a key or an invoice recorded meanwhile) is answered
    as `InvoiceLedger.issue_invoices` always has: the first answer, else who exists."""
    return record_batch(ledger, tenant_id, validate_batch(drafts, ledger.today()), by, idempotency)


def validate_batch(
    drafts: Sequence[InvoiceDraft], today: date
) -> list[tuple[InvoiceFacts, list[FieldWarning]]]:
    """Every draft checked; the errors of all of them at once, each under `invoices[i]`."""
    errors: list[InvalidFieldError] = []
    checked: list[tuple[InvoiceFacts, list[FieldWarning]]] = []
    for i, draft in enumerate(drafts):
        try:
            checked.append(validate_draft(draft, today))
        except ValidationFailedError as e:
            errors.extend(err.at(f"invoices[{i}]") for err in e.errors)
    if errors:
        raise ValidationFailedError(errors)
    return checked


def record_batch(
    ledger: InvoiceLedger,
    tenant_id: str,
    checked: Sequence[tuple[InvoiceFacts, list[FieldWarning]]],
    by: Provenance,
    idempotency: Idempotency | None,
) -> list[CommandResult]:
    """Record checked invoices (and the receipt) in one insert: the write half of
    `issue_batch`, which is what the library's batched save is compared with."""
    encoder = ledger.state_encoder
    now = Invoice.Issued.create_timestamp
    events = [Invoice.issued_event(tenant_id, facts, by, now()) for facts, _ in checked]
    counts = Counter(e.invoice_key for e in events)
    if len(counts) != len(events):
        raise InvoiceAlreadyExistsError(sorted(k for k, n in counts.items() if n > 1))
    warned = [warnings_as_dicts(warnings) if warnings else [] for _, warnings in checked]

    ids = [e.originator_id for e in events]
    versions = [e.originator_version for e in events]
    topics = [_ISSUED_TOPIC] * len(events)
    if encoder is not None:
        states = [encoder.state(vars(e), _ISSUED_CLASS_VERSION) for e in events]
    else:
        states = [ledger.mapper.to_stored_event(e).state for e in events]
    saved: list[SavedEvent] = [(0, e, None) for e in events]
    if idempotency is not None:  # last, as in every save: its position is the save's last
        body = {"results": [r.receipt_body() for r in _results(events, warned, None)]}
        receipt = CommandReceipt.record(
            tenant_id, idempotency.key, idempotency.fingerprint, body, by
        )
        for recorded in receipt.collect_events():
            row = ledger.mapper.to_stored_event(recorded)
            ids.append(receipt.id)
            versions.append(row.originator_version)
            topics.append(row.topic)
            states.append(row.state)
            saved.append((0, recorded, receipt))
    try:
        positions = ledger.event_log.insert_rows(ids, versions, topics, states)
    except IntegrityError:
        if idempotency is not None and (replay := ledger._replay_batch(tenant_id, idempotency)):
            return replay
        existing = [e.invoice_key for e in events if ledger._exists(e.originator_id)]
        if not existing:
            raise ConcurrencyConflictError(1) from None
        raise InvoiceAlreadyExistsError(existing) from None
    if positions:  # what `InvoiceLedger._record` and `_notify` tell after a save
        heard = [(p, e, a) for p, (_, e, a) in zip(positions, saved, strict=True)]
        for listener in ledger._event_listeners:
            listener(heard)
        for wake in ledger._listeners:
            wake(max(positions))
    return _results(events, warned, positions)


def _results(
    events: Sequence[Invoice.Issued],
    warned: Sequence[list[dict[str, str]]],
    positions: Sequence[int] | None,
) -> list[CommandResult]:
    """Each new invoice's answer, at its log position (0 before the insert)."""
    at = positions if positions is not None else [0] * len(events)
    return [
        CommandResult(e.originator_id, e.invoice_key, _STATUS, e.originator_version, p, w)
        for e, w, p in zip(events, warned, at, strict=False)
    ]
