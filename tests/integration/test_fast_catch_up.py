"""The fast catch-up (pages decoded by orjson, the batch folded in memory and written in one
statement per table, the next page fetched while a batch commits) writes exactly the rows the
event-at-a-time fold gives, on both stores, whatever the batch size."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from application.invoices import status_view
from domain.calendar import SHANGHAI
from domain.errors import DomainError
from domain.invoices.identity import invoice_id, parse_canonical_key
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import LineDraft, validate_draft
from infrastructure.bootstrap import Services
from infrastructure.projections.bulk import load_rows, upsert
from infrastructure.projections.decoding import EventDecoder
from infrastructure.store.tables import invoice_status, status_daily
from tests.builders import SELLER, a_draft, a_paper_draft, by

T = SELLER
AT = datetime(2026, 11, 20, 3, tzinfo=UTC)
ODD = 'a "quoted" \\ back{slash},NULL\nnew line\ttab é 发票'  # what array text must escape
STEPS = {
    "submit": lambda inv, i: inv.submit(by(), "erp", f"B{i}"),
    "fail": lambda inv, i: inv.fail_submission(by(), "net", "timeout"),
    "ack": lambda inv, i: inv.acknowledge(by(), f"ACK{i}", AT, "poll"),
    "reject": lambda inv, i: inv.reject(by(), "E01", ODD if i % 2 else 'say "no", {x}'),
    "missing": lambda inv, i: inv.mark_missing(by(), "timer", "overdue"),
    "void": lambda inv, i: inv.void(by(), "recovered"),
    "red_part": lambda inv, i: inv.red_reverse(
        by(), "11010826112001615708", f"2611200000013511{i:04d}", "partial", "04", "300.00"
    ),
}


def history(services: Services, invoices: int = 40, seed: int = 15) -> None:
    """Invoices walked at random through their steps, saved in groups, some corrected."""
    rng = random.Random(seed)
    ledger, today = services.ledger, services.ledger.today()
    made: list[Invoice] = []
    for n in range(invoices):
        draft = a_paper_draft() if n % 4 == 0 else a_draft()
        made.append(Invoice.issue(T, validate_draft(draft, today)[0], by()))
    ledger.save(*made[: invoices // 2])
    ledger.save(*made[invoices // 2 :])
    for i in range(invoices * 4):
        group = rng.sample(made, rng.randint(1, min(6, invoices)))
        for inv in group:
            try:
                STEPS[rng.choice(list(STEPS))](inv, i)
            except DomainError:
                pass
        ledger.save(*group)
    # corrections: a red-letter invoice reversing one, a new one replacing another
    original, replaced = made[1], made[2]
    red = a_draft(
        reverses_key=original.invoice_key,
        amount="-1000.00",
        tax="-130.00",
        total="-1130.00",
        lines=(LineDraft("*信息技术服务*软件维护", "-1000.00", "-130.00", "0.13", quantity="-10"),),
    )
    ledger.save(Invoice.issue(T, validate_draft(red, today)[0], by()))
    replacement = validate_draft(a_draft(replaces_key=replaced.invoice_key), today)[0]
    ledger.save(Invoice.issue(T, replacement, by()))


def one_at_a_time(services: Services) -> tuple[dict[Any, dict[str, Any]], Counter[Any]]:
    """The view and its daily counts by the pure fold, event by event, from the decoded log."""
    ledger = services.ledger
    rows: dict[Any, dict[str, Any]] = {}
    entered: Counter[Any] = Counter()
    for n in ledger.recorder.select_notifications(start=0, limit=10**6, inclusive_of_start=False):
        event = ledger.mapper.to_domain_event(n)
        if not status_view.handles(event):
            continue
        before = rows.get(event.originator_id)
        row = rows[event.originator_id] = status_view.fold(before, event, n.id)
        if isinstance(event, Invoice.Issued):
            for key in status_view.originals(event):
                original = invoice_id(event.tenant_id, parse_canonical_key(key))
                if original in rows:
                    rows[original] = status_view.link_original(rows[original], event)
        if before is None or before["status"] != row["status"]:
            day = event.occurred_at.astimezone(SHANGHAI).date()
            entered[(row["tenant_id"], day, row["status"])] += 1
    return rows, entered


def stored(services: Services) -> tuple[dict[Any, dict[str, Any]], Counter[Any]]:
    with services.engine.connect() as conn:
        rows = {r.invoice_id: dict(r._mapping) for r in conn.execute(select(invoice_status))}
        daily = Counter(
            {(r.tenant_id, r.day, r.status): r.entered for r in conn.execute(select(status_daily))}
        )
    return rows, daily


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_a_fast_catch_up_writes_what_the_event_at_a_time_fold_gives(
    services: Services, batch: int
) -> None:
    history(services)
    expected_rows, expected_daily = one_at_a_time(services)
    worker = services.worker("invoice_status")
    worker.batch_size = batch
    assert worker.catch_up() == worker.head()
    rows, daily = stored(services)
    assert rows == expected_rows
    assert daily == expected_daily
    statuses = {r["status"] for r in rows.values()}
    assert {"rejected", "partially_reversed", "voided"} <= statuses  # the walk reached them
    assert any(r["rejection_message"] == ODD for r in rows.values())
    assert any(r["red_invoice_keys"] for r in rows.values())  # the corrections linked
    assert any(r["replaced_by"] for r in rows.values())
    assert worker.dead_letter_count() == 0
    worker.reset()  # and again over the emptied view: the same rows, the same counts
    worker.batch_size = 5
    worker.catch_up()
    assert stored(services) == (expected_rows, expected_daily)


def test_the_fast_decoder_gives_the_mappers_events_and_its_errors(services: Services) -> None:
    history(services, invoices=8)
    ledger = services.ledger
    decoder = EventDecoder(ledger.mapper)
    assert decoder.fast
    notes = ledger.recorder.select_notifications(start=0, limit=10**6, inclusive_of_start=False)
    for n in notes:
        mine = decoder.decode(n.originator_id, n.originator_version, n.topic, n.state)
        theirs = ledger.mapper.to_domain_event(n)
        assert type(mine) is type(theirs) and vars(mine) == vars(theirs)
    issued = next(n for n in notes if n.originator_version == 1 and b'"remarks":' in n.state)
    # NaN is JSON to the standard parser, not to orjson: the mapper decodes it
    nan = issued.state.replace(b'"remarks":', b'"extra":NaN,"remarks":')
    event = decoder.decode(issued.originator_id, 1, issued.topic, nan)
    assert event.extra != event.extra  # type: ignore[attr-defined]  # NaN
    with pytest.raises(MapperDeserialisationError):
        decoder.decode(issued.originator_id, 1, issued.topic, b"{not json")
    unknown = issued.state.replace(b'"_type_":"datetime_iso"', b'"_type_":"no_such_type"', 1)
    with pytest.raises(MapperDeserialisationError) as raised:
        decoder.decode(issued.originator_id, 1, issued.topic, unknown)
    with pytest.raises(MapperDeserialisationError) as by_mapper:
        ledger.mapper.to_domain_event(StoredEvent(issued.originator_id, 1, issued.topic, unknown))
    assert str(raised.value) == str(by_mapper.value)


def test_odd_values_are_written_and_read_back_exactly(services: Services) -> None:
    history(services, invoices=4)
    worker = services.worker("invoice_status")
    worker.catch_up()
    rows, _ = stored(services)
    odd_texts = [ODD, "", "NULL", "null", '"', "\\", "{}", "a,b", "\u2028", "\x01ctl", "é"]
    for text in [*odd_texts, odd_texts]:  # each alone (written as array text, or not), then mixed
        texts = text if isinstance(text, list) else [text]
        changed = [
            {**row, "rejection_message": texts[i % len(texts)], "platform_ref": None, "code": "x"}
            for i, row in enumerate(rows.values())
        ]
        with services.write_engine.begin() as conn:
            upsert(conn, invoice_status, changed, "invoice_id")
            ids = [r["invoice_id"] for r in changed]
            assert load_rows(conn, invoice_status, "invoice_id", ids) == {
                r["invoice_id"]: r for r in changed
            }
        assert stored(services)[0] == {r["invoice_id"]: r for r in changed}
    naive = [{**changed[0], "updated_at": datetime(2026, 11, 20, 3)}]  # no time zone: refused
    with pytest.raises((ValueError, StatementError)), services.write_engine.begin() as conn:
        upsert(conn, invoice_status, naive, "invoice_id")
