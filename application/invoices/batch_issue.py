"""Batch issuance: many new invoices recorded in one atomic insert, without the per-aggregate
work the library's `save()` does for them.

`Application.save(*invoices)` builds each invoice as an aggregate (its created event mutated
into an object, kept pending, collected again), encodes each event through the transcoder's
pure-Python JSON encoder, and wraps every row in `Recording` and `Notification` objects. A new
invoice needs none of that: its one event (`Invoice.issued_event`, the domain's own rules) is
encoded here straight to the mapper's bytes with orjson and inserted with the receipt, if any,
through the recorder's one call (`EventLog.insert_rows`: the same function, table and lock).
The rows are the library's, byte for byte (tests/integration/test_batch_issue.py compares
them), so readers, projections and the seal cannot tell which path wrote them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper

from application.dto import CommandResult, Idempotency, warnings_as_dicts
from application.service_errors import ConcurrencyConflictError, InvoiceAlreadyExistsError
from domain.base import Provenance
from domain.errors import InvalidFieldError, ValidationFailedError
from domain.idempotency import CommandReceipt
from domain.invoices.identity import FieldWarning
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import InvoiceDraft, InvoiceFacts, validate_draft

if TYPE_CHECKING:
    from application.invoices.ledger import InvoiceLedger, SavedEvent

_ISSUED_TOPIC = Invoice.Issued.TOPIC
_ISSUED_CLASS_VERSION = Invoice.Issued.class_version
_STATUS = "issued"  # what `Issued.apply` sets: the status of every new invoice
# Not the event's state: the row's own columns.
_ROW_COLUMNS = ("originator_id", "originator_version")


class FastEventEncoder:
    """Encodes an event's attributes to exactly the bytes the mapper stores (the library's
    JSONTranscoder: compact separators, UTF-8 unescaped, registered types as
    `{"_type_": name, "_data_": ...}`), with orjson. Only for a mapper with no compressor
    and no cipher, and only for values whose types are JSON's or the transcoder's own: orjson
    writes UUIDs natively, so an event holding one is encoded by the mapper instead."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        transcoder = mapper.transcoder
        self.usable = (
            isinstance(transcoder, JSONTranscoder)
            and mapper.compressor is None
            and mapper.cipher is None
        )
        self._types = transcoder.types if isinstance(transcoder, JSONTranscoder) else {}

    def _default(self, obj: Any) -> dict[str, Any]:
        transcoding = self._types.get(type(obj))
        if transcoding is None:
            raise TypeError(f"no transcoding for {type(obj)}")
        return {"_type_": transcoding.name, "_data_": transcoding.encode(obj)}

    def state(self, attributes: dict[str, Any], class_version: int) -> bytes:
        """The stored state of an event whose `vars()` are `attributes`."""
        state = dict(attributes)
        for column in _ROW_COLUMNS:
            del state[column]
        if class_version > 1:
            state["class_version"] = class_version
        return orjson.dumps(state, default=self._default, option=orjson.OPT_PASSTHROUGH_DATETIME)


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
    encoder = FastEventEncoder(ledger.mapper)
    now = Invoice.Issued.create_timestamp
    events = [Invoice.issued_event(tenant_id, facts, by, now()) for facts, _ in checked]
    results = [
        CommandResult(
            e.originator_id,
            e.invoice_key,
            _STATUS,
            e.originator_version,
            0,
            warnings_as_dicts(warnings),
        )
        for e, (_, warnings) in zip(events, checked, strict=True)
    ]
    counts = Counter(e.invoice_key for e in events)
    if len(counts) != len(events):
        raise InvoiceAlreadyExistsError(sorted(k for k, n in counts.items() if n > 1))

    ids = [e.originator_id for e in events]
    versions = [e.originator_version for e in events]
    topics = [_ISSUED_TOPIC] * len(events)
    if encoder.usable:
        states = [encoder.state(vars(e), _ISSUED_CLASS_VERSION) for e in events]
    else:
        states = [ledger.mapper.to_stored_event(e).state for e in events]
    saved: list[SavedEvent] = [(0, e, None) for e in events]
    if idempotency is not None:  # last, as in every save: its position is the save's last
        body = {"results": [r.receipt_body() for r in results]}
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
    return [replace(r, position=p) for r, p in zip(results, positions, strict=False)]
