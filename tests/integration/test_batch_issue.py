"""The batch issuance path writes the library's rows: the same drafts issued through
`Application.save` of `Invoice.issue` aggregates (with their receipt) on one database and
through `InvoiceLedger.issue_invoices` on another give the same stored rows, byte for byte,
apart from the writer's clock (`timestamp`), positions and `recorded_at`. On both stores."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder
from hypothesis import given, settings
from hypothesis import strategies as st

from application.dto import CommandResult, Idempotency, warnings_as_dicts
from application.ports import StoredEventRow
from application.serialization import DateAsISO
from domain.base import Provenance, Source
from domain.idempotency import CommandReceipt, receipt_id
from domain.invoices.invoice import Invoice
from domain.invoices.issuance import LineDraft, validate_draft
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store.event_states import fast_state_encoder
from tests.builders import SELLER, a_draft, a_paper_draft
from tests.conftest import _admin, _pg_url
from tests.fakes import SettableClock

T = SELLER
AT = Provenance("clerk-7", Source.API, datetime(2026, 11, 18, 9, 30, 15, 123456, tzinfo=UTC))
TIMESTAMP = re.compile(rb'"timestamp":\{"_type_":"datetime_iso","_data_":"[^"]+"\}')


@pytest.fixture
def twin_settings(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """A second fresh, migrated database on the same store as `settings`."""
    if settings.is_postgres:
        name = f"fapiao_twin_{uuid.uuid4().hex[:12]}"
        template = request.getfixturevalue("pg_template")
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield Settings(database_url=_pg_url(name), pool_size=2, max_overflow=4, environment="test")
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        path = tmp_path / "twin.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield Settings(database_url=f"sqlite:///{path}", environment="test")


@pytest.fixture
def twin(twin_settings: Settings) -> Iterator[Services]:
    svc = build_services(twin_settings, SettableClock())
    yield svc
    svc.close()


def drafts() -> list[Any]:
    """Drafts that exercise every kind of value the Issued event stores."""
    return [
        a_draft(),
        a_draft(remarks='备注 "quoted" \\ back\tslash\nnew line\r\n and 😀 and \u2028'),
        a_paper_draft(buyer=a_draft().buyer.__class__("个人消费者", None)),
        a_draft(
            amount="1500.00",
            tax="195.00",
            total="1695.00",
            tax_rate="0.13",
            lines=(
                LineDraft("*信息技术服务*软件维护", "1000.00", "130.00", "0.13", unit="次"),
                LineDraft("*信息技术服务*咨询", "500.00", "65.00", "0.13", tax_code="3040201"),
            ),
        ),
        a_draft(number="25112999000000000001"),  # a number whose year warns
    ]


def library_save(services: Services, batch: list[Any], key: Idempotency) -> list[CommandResult]:
    """What `issue_invoices` did before the batch path: aggregates and `Application.save`."""
    ledger = services.ledger
    invoices = []
    for d in batch:
        facts, warnings = validate_draft(d, ledger.today())
        invoices.append((Invoice.issue(T, facts, AT), warnings))
    results = [
        CommandResult(i.id, i.invoice_key, i.status.value, i.version, 0, warnings_as_dicts(w))
        for i, w in invoices
    ]
    body = {"results": [r.receipt_body() for r in results]}
    receipt = CommandReceipt.record(T, key.key, key.fingerprint, body, AT)
    ledger.save(*[i for i, _ in invoices], receipt)
    return results


def rows(services: Services, ids: list[uuid.UUID]) -> list[StoredEventRow]:
    found = services.ledger.event_log.select_streams(ids)
    return sorted((r for stream in found.values() for r in stream), key=lambda r: r.position)


def comparable(row: StoredEventRow) -> tuple[uuid.UUID, int, str, bytes]:
    state = TIMESTAMP.sub(b'"timestamp":"T"', row.state)
    return row.originator_id, row.originator_version, row.topic, state


def untimed(invoice: Invoice) -> dict[str, Any]:
    return {k: v for k, v in vars(invoice).items() if k not in ("_created_on", "_modified_on")}


def test_the_batch_path_stores_the_librarys_rows_byte_for_byte(
    services: Services, twin: Services
) -> None:
    assert services.ledger.state_encoder is not None  # the fast encoder, not the mapper
    batch = drafts()
    key = Idempotency("batch-42", "fp-42")
    expected = library_save(twin, batch, key)
    got = services.ledger.issue_invoices(T, batch, AT, key)

    ids = [r.invoice_id for r in got] + [receipt_id(T, key.key)]
    assert [r.invoice_id for r in got] == [r.invoice_id for r in expected]
    ours, theirs = rows(services, ids), rows(twin, ids)
    assert len(ours) == len(theirs) == len(batch) + 1
    for mine, library in zip(ours, theirs, strict=True):
        assert TIMESTAMP.search(mine.state) and TIMESTAMP.search(library.state)
        assert comparable(mine) == comparable(library)
    assert ours[-1].topic == CommandReceipt.Recorded.TOPIC  # the receipt is the save's last
    assert [r.position for r in got] == [r.position for r in ours[:-1]]

    # What readers make of them is the same too: the aggregate, its history, the answer.
    for r, e in zip(got, expected, strict=True):
        assert (r.invoice_key, r.status, r.version, r.warnings) == (
            e.invoice_key,
            e.status,
            e.version,
            e.warnings,
        )
        mine_inv = services.ledger.get_invoice_state(T, r.invoice_id)
        their_inv = twin.ledger.get_invoice_state(T, r.invoice_id)
        assert untimed(mine_inv) == untimed(their_inv)
    again = services.ledger.issue_invoices(T, batch, AT, key)
    assert [(r.invoice_id, r.position, r.replayed) for r in again] == [
        (r.invoice_id, r.position, True) for r in got
    ]


def test_listeners_hear_every_event_of_a_batch_once_after_it_commits(services: Services) -> None:
    heard: list[tuple[int, Any, Any]] = []
    woken: list[int] = []
    services.ledger.on_events(heard.extend)
    services.ledger.on_saved(woken.append)
    key = Idempotency("batch-43", "fp-43")
    got = services.ledger.issue_invoices(T, [a_draft() for _ in range(4)], AT, key)
    positions = [p for p, _, _ in heard]
    assert positions[:4] == [r.position for r in got]
    assert [type(e) for _, e, _ in heard] == [Invoice.Issued] * 4 + [CommandReceipt.Recorded]
    assert [e.originator_id for _, e, _ in heard[:4]] == [r.invoice_id for r in got]
    assert isinstance(heard[-1][2], CommandReceipt)
    assert woken == [max(positions)]
    assert services.ledger.event_log.position_of(receipt_id(T, "batch-43"), 1) == positions[-1]
    heard.clear()
    services.ledger.issue_invoices(T, [a_draft() for _ in range(2)], AT, key)  # a repeat
    assert heard == [] and woken == [max(positions)]


# ---- the encoder alone: the transcoder's bytes for any text and value --------------------------


def transcoder() -> JSONTranscoder:
    from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, UUIDAsHex

    t = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), DateAsISO()):
        t.register(transcoding)
    return t


class _Mapper:
    def __init__(self) -> None:
        self.transcoder = transcoder()
        self.compressor = None
        self.cipher = None


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    name=text,
    note=text,
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=2),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    at=st.datetimes(timezones=st.just(UTC)),
    n=st.integers(-(2**53), 2**53),
    flag=st.booleans(),
)
def test_the_fast_encoder_writes_the_transcoders_bytes(
    name: str, note: str, amount: Decimal, day: date, at: datetime, n: int, flag: bool
) -> None:
    attributes = {
        "originator_id": uuid.uuid4(),
        "originator_version": 1,
        "timestamp": at,
        "name": name,
        "lines": [{"name": note, "amount": str(amount), "unit": None}],
        "amount": amount,
        "issued_on": day,
        "count": n,
        "flag": flag,
        "nothing": None,
    }
    mapper = _Mapper()
    expected_state = {k: v for k, v in attributes.items() if k not in ("originator_id",)}
    expected_state.pop("originator_version")
    expected_state["class_version"] = 2
    encoder = fast_state_encoder(mapper)  # type: ignore[arg-type]
    assert encoder is not None
    assert encoder.state(attributes, 2) == mapper.transcoder.encode(expected_state)


def test_a_concurrent_duplicate_batch_gets_the_first_answer_and_writes_nothing(
    services: Services,
) -> None:
    batch = [a_draft() for _ in range(20)]
    key = Idempotency("batch-44", "fp-44")
    answers: list[list[CommandResult]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def send() -> None:
        start.wait()
        try:
            answers.append(services.ledger.issue_invoices(T, batch, AT, key))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert sorted(sum(r.replayed for r in a) for a in answers) == [0, 20, 20]
    first = [(r.invoice_id, r.position) for r in answers[0]]
    assert all([(r.invoice_id, r.position) for r in a] == first for a in answers)
    written = rows(services, [r.invoice_id for r in answers[0]] + [receipt_id(T, key.key)])
    assert len(written) == 21  # each invoice once, and one receipt


def test_the_fast_encoder_refuses_what_it_would_write_differently() -> None:
    encoder = fast_state_encoder(_Mapper())  # type: ignore[arg-type]
    assert encoder is not None
    with pytest.raises(TypeError, match="UUID"):
        encoder.state({"originator_id": 1, "originator_version": 1, "ref": uuid.uuid4()}, 1)
    compressed = _Mapper()
    compressed.compressor = object()  # type: ignore[assignment]
    assert fast_state_encoder(compressed) is None  # type: ignore[arg-type]
