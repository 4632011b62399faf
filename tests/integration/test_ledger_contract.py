"""The application on a real store: the same tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from application.dto import Idempotency
from application.invoices.lifecycle import AcknowledgeRequest, SubmitRequest
from application.service_errors import (
    IdempotencyKeyReusedError,
    InvoiceAlreadyExistsError,
    InvoiceNotFoundError,
)
from domain.errors import InvalidTransitionError, ValidationFailedError
from infrastructure.bootstrap import Services
from tests.builders import SELLER, a_draft, by

pytestmark = pytest.mark.both_commit_paths  # group commit on and off

T = SELLER


def events_count(services: Services) -> int:
    """Rows in the event table (positions have gaps on PostgreSQL: failed inserts use some)."""
    table = "ledger_events" if services.settings.is_postgres else "stored_events"
    with services.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_issue_then_lifecycle_with_positions_and_recorded_at(services: Services) -> None:
    ledger = services.ledger
    issued = ledger.issue_invoice(T, a_draft(), by())
    submitted = ledger.change_invoice(
        T, issued.invoice_id, SubmitRequest(channel="erp", batch_ref="B1"), by()
    )
    acked = ledger.change_invoice(
        T, issued.invoice_id, AcknowledgeRequest(platform_ref="ACK-1", learned_via="poll"), by()
    )
    assert issued.position < submitted.position < acked.position
    assert (acked.status, acked.version) == ("acknowledged", 3)
    events = ledger.list_invoice_events(T, issued.invoice_id)
    assert [e.type for e in events] == ["Issued", "Submitted", "Acknowledged"]
    assert [e.position for e in events] == [issued.position, submitted.position, acked.position]
    recorded = [datetime.fromisoformat(e.recorded_at) for e in events]
    assert recorded == sorted(recorded) and all(r.tzinfo for r in recorded)
    now = datetime.now(UTC)
    assert all(now - timedelta(minutes=5) < r <= now + timedelta(seconds=5) for r in recorded)


def test_the_same_invoice_twice_is_a_conflict_and_writes_nothing(services: Services) -> None:
    draft = a_draft()
    services.ledger.issue_invoice(T, draft, by())
    before = events_count(services)
    with pytest.raises(InvoiceAlreadyExistsError):
        services.ledger.issue_invoice(T, draft, by())
    assert events_count(services) == before


def test_an_invalid_invoice_writes_nothing(services: Services) -> None:
    with pytest.raises(ValidationFailedError):
        services.ledger.issue_invoice(T, a_draft(total="1.00"), by())
    assert events_count(services) == 0


def test_a_batch_is_all_or_nothing(services: Services) -> None:
    existing = a_draft()
    services.ledger.issue_invoice(T, existing, by())
    before = events_count(services)
    with pytest.raises(InvoiceAlreadyExistsError) as e:
        services.ledger.issue_invoices(T, [a_draft(), existing, a_draft()], by())
    assert e.value.keys == [existing.number]
    with pytest.raises(ValidationFailedError) as v:
        services.ledger.issue_invoices(T, [a_draft(), a_draft(tax="1.00")], by())
    assert v.value.errors[0].field.startswith("invoices[1].")
    assert events_count(services) == before
    results = services.ledger.issue_invoices(T, [a_draft() for _ in range(50)], by())
    assert len({r.invoice_id for r in results}) == 50
    assert events_count(services) == before + 50


def test_another_tenants_invoice_is_not_found(services: Services) -> None:
    issued = services.ledger.issue_invoice(T, a_draft(), by())
    with pytest.raises(InvoiceNotFoundError):
        services.ledger.change_invoice(
            "91320621MA1MRHG205", issued.invoice_id, SubmitRequest(channel="erp"), by()
        )
    with pytest.raises(InvoiceNotFoundError):
        services.ledger.list_invoice_events("91320621MA1MRHG205", issued.invoice_id)


def test_an_idempotent_repeat_returns_the_first_answer_and_writes_nothing(
    services: Services,
) -> None:
    ledger = services.ledger
    issued = ledger.issue_invoice(T, a_draft(), by())
    key = Idempotency("retry-7", "fingerprint-A")
    first = ledger.change_invoice(T, issued.invoice_id, SubmitRequest(channel="erp"), by(), key)
    before = events_count(services)
    again = ledger.change_invoice(T, issued.invoice_id, SubmitRequest(channel="erp"), by(), key)
    assert again.replayed and not first.replayed
    assert (again.invoice_id, again.version, again.status) == (
        first.invoice_id,
        first.version,
        first.status,
    )
    assert again.position >= first.position
    assert events_count(services) == before
    with pytest.raises(IdempotencyKeyReusedError):
        ledger.change_invoice(
            T,
            issued.invoice_id,
            SubmitRequest(channel="erp"),
            by(),
            Idempotency("retry-7", "fingerprint-B"),
        )


def test_an_idempotent_issue_repeat_is_not_a_conflict(services: Services) -> None:
    draft = a_draft()
    key = Idempotency("issue-1", "fp")
    first = services.ledger.issue_invoice(T, draft, by(), key)
    second = services.ledger.issue_invoice(T, draft, by(), key)
    assert second.replayed and second.invoice_id == first.invoice_id


def test_concurrent_commands_on_one_invoice_are_retried_not_lost(services: Services) -> None:
    ledger = services.ledger
    issued = ledger.issue_invoice(T, a_draft(), by())
    ledger.change_invoice(T, issued.invoice_id, SubmitRequest(channel="erp"), by())
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        try:
            ledger.change_invoice(
                T,
                issued.invoice_id,
                AcknowledgeRequest(platform_ref="ACK", learned_via="poll"),
                by(),
            )
            outcomes.append("ok")
        except InvalidTransitionError:
            outcomes.append("already acknowledged")

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already acknowledged"] * 3 + ["ok"]
    assert ledger.get_invoice_state(T, issued.invoice_id).version == 3


def test_stored_events_are_append_only(services: Services) -> None:
    services.ledger.issue_invoice(T, a_draft(), by())
    table = "ledger_events" if services.settings.is_postgres else "stored_events"
    for statement in (f"UPDATE {table} SET topic = 'x'", f"DELETE FROM {table}"):
        with pytest.raises(Exception, match="append-only"):
            with services.engine.begin() as conn:
                conn.execute(text(statement))
    assert events_count(services) == 1


def test_resolving_by_canonical_key_finds_the_same_invoice(services: Services) -> None:
    draft = a_draft()
    issued = services.ledger.issue_invoice(T, draft, by())
    assert services.ledger.resolve_invoice_id(T, draft.number) == issued.invoice_id
    with pytest.raises(InvoiceNotFoundError):
        services.ledger.resolve_invoice_id(T, "not-a-key")


def test_a_repeated_batch_with_its_idempotency_key_writes_nothing(services: Services) -> None:
    drafts = [a_draft() for _ in range(3)]
    key = Idempotency("batch-9", "fp-batch")
    first = services.ledger.issue_invoices(T, drafts, by(), key)
    before = events_count(services)
    again = services.ledger.issue_invoices(T, drafts, by(), key)
    assert [r.replayed for r in again] == [True] * 3
    assert [(r.invoice_id, r.position) for r in again] == [
        (r.invoice_id, r.position) for r in first
    ]
    assert events_count(services) == before
    with pytest.raises(IdempotencyKeyReusedError):
        services.ledger.issue_invoices(T, drafts[:1], by(), Idempotency("batch-9", "other"))
