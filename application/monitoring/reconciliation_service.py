"""Reconcile a platform export against the ledger: stage the rows, classify them against the
ledger in the database, record findings, and turn "absent" into MarkedMissing and "present"
into acknowledgements.

Memory stays flat: rows stream into the staging table (COPY on PostgreSQL) as they are read,
the classification streams back in key order, and findings and events are written in batches.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.invoices.ledger import InvoiceLedger
from application.ports import ExportSource, Finding, ReconciliationStore
from application.service_errors import ApplicationError, CommandInProgressError, RunNotFoundError
from domain.base import Provenance
from domain.errors import DomainError
from domain.invoices.invoice import Invoice
from domain.monitoring.platform_export import (
    DEFAULT_COLUMNS,
    PlatformRow,
    RowError,
    check_period,
    column_index,
    find_header,
    row_reader,
)
from domain.monitoring.reconciliation_run import (
    ReconciliationRun,
    absent,
    compare,
    presence_action,
    run_id,
)

HEADER_SEARCH_ROWS = 30
STAGE_CHUNK = 5000  # rows between progress reports
EVENT_CHUNK = 200  # verdicts decided and saved together
FINDINGS_CHUNK = 20_000  # findings written together (with the events of their verdicts)
Progress = Callable[[int, int], None]


class ReconciliationFileError(ApplicationError):
    """The file cannot be reconciled at all: nothing was recorded."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class RunResult:
    run_id: UUID
    replayed: bool
    file_sha256: str
    period_from: date | None
    period_to: date | None
    rows: int
    counts: dict[str, int]
    events_caused: int
    findings_sha256: str


@dataclass
class _Merge:
    """Accumulates findings and pending events, flushing both in order."""

    service: ReconciliationService
    tenant_id: str
    run: UUID
    by: Provenance
    counts: dict[str, int] = field(default_factory=dict)
    buffer: list[Finding] = field(default_factory=list)
    actions: list[tuple[int, UUID, str]] = field(default_factory=list)
    seq: int = 0
    events: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, finding: Finding, action: str | None = None) -> None:
        self.counts[finding.cls] = self.counts.get(finding.cls, 0) + 1
        if action is not None and finding.invoice_id is not None:
            self.actions.append((len(self.buffer), finding.invoice_id, action))
        self.buffer.append(finding)
        if len(self.actions) >= EVENT_CHUNK or len(self.buffer) >= FINDINGS_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.actions:
            outcomes = self.service.ledger_actions(self.tenant_id, self.run, self.actions, self.by)
            for index, _, _ in self.actions:
                event, position, note = outcomes[index]
                f = self.buffer[index]
                self.buffer[index] = f._replace(event=event, position=position, note=note or f.note)
                self.events += event is not None
            self.actions = []
        if self.buffer:
            self.service.store.add_findings(self.run, self.tenant_id, self.seq, self.buffer)
            self.digest.update(b"".join([finding_line(f) for f in self.buffer]))
            self.seq += len(self.buffer)
            self.buffer = []


# A JSON string as json.dumps(ensure_ascii=False) writes it: the function its encoder calls.
_text: Callable[[str], str] = json.encoder.encode_basestring


def finding_line(f: Finding) -> bytes:
    """The canonical form of a finding that `findings_sha256` covers, one JSON line each: the
    finding's fields as json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    writes them (the invoice id as text), spelled out because a million of them are written."""
    differences = (
        json.dumps(list(f.differences), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        if f.differences
        else "[]"
    )
    if f.invoice_id:
        h = f.invoice_id.hex  # str(uuid), at a third of its cost
        invoice_id = f'"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"'
    else:
        invoice_id = "null"
    return (
        f'{{"cls":{_text(f.cls)},"differences":{differences},'
        f'"event":{"null" if f.event is None else _text(f.event)},'
        f'"invoice_id":{invoice_id},'
        f'"invoice_key":{"null" if f.invoice_key is None else _text(f.invoice_key)},'
        f'"line":{"null" if f.line is None else int(f.line)},"note":{_text(f.note)},'
        f'"position":{"null" if f.position is None else int(f.position)}}}\n'
    ).encode()


class ReconciliationService:
    def __init__(
        self,
        ledger: InvoiceLedger,
        store: ReconciliationStore,
        bring_status_up_to_date: Callable[[], None],
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.bring_status_up_to_date = bring_status_up_to_date
        self.observe = observe  # (rows, seconds) of each completed run: the rows/s metric

    def get_run(self, tenant_id: str, run: UUID) -> RunResult:
        try:
            aggregate = cast(ReconciliationRun, self.ledger.repository.get(run))
        except AggregateNotFoundError:
            raise RunNotFoundError(run) from None
        if (
            not isinstance(aggregate, ReconciliationRun)
            or aggregate.tenant_id != tenant_id
            or not aggregate.completed
        ):
            raise RunNotFoundError(run)
        return self._result(aggregate, replayed=True)

    def reconcile(
        self,
        tenant_id: str,
        source: ExportSource,
        sha256: str,
        file_name: str,
        by: Provenance,
        direction: str = "outbound",
        columns: dict[str, str] | None = None,
        period: tuple[date, date] | None = None,
        progress: Progress | None = None,
    ) -> RunResult:
        """Reconcile one export; the same file again returns the first result, changing nothing."""
        if direction not in ("outbound", "inbound"):
            raise ReconciliationFileError("direction must be outbound or inbound")
        if period is not None:
            period = check_period(*period)
        started = time.perf_counter()
        rows = source.rows()
        index, _ = self._header(rows, columns or DEFAULT_COLUMNS, source)
        rid = run_id(tenant_id, sha256)
        try:
            existing = cast(ReconciliationRun, self.ledger.repository.get(rid))
        except AggregateNotFoundError:
            existing = None
        if existing is not None and existing.completed:
            return self._result(existing, replayed=True)
        if existing is None:  # saved once the whole file has been read: a file that cannot
            # be read to its end leaves no run behind
            run = ReconciliationRun.start(
                tenant_id, sha256, file_name, source.file_type, source.encoding, direction, by
            )
        else:  # an earlier attempt died half-way: start its staging again
            run = existing
            self.store.clear(rid)
        merge = _Merge(self, tenant_id, rid, by)
        try:
            staged, first, last = self._stage(rid, rows, index, source, merge, progress)
            merge.flush()
        except BaseException:
            self.store.clear(rid)
            raise
        if existing is None:
            try:
                self.ledger.save(run)
            except IntegrityError:  # the same file is being reconciled right now
                self.store.clear(rid)
                raise CommandInProgressError(f"reconciliation of {sha256}") from None
        covered = period or ((first, last) if first and last else None)
        self.bring_status_up_to_date()
        self._merge(merge, rid, tenant_id, direction, covered)
        merge.flush()
        run.complete(
            by,
            covered,
            staged + merge.counts.get("invalid", 0),
            merge.counts,
            merge.events,
            merge.digest.hexdigest(),
        )
        self.ledger.save(run)
        result = self._result(run, replayed=False)
        if self.observe is not None:
            self.observe(result.rows, time.perf_counter() - started)
        return result

    # ---- steps -------------------------------------------------------------------------------

    def _header(
        self,
        rows: Iterator[tuple[int, list[object]]],
        columns: dict[str, str],
        source: ExportSource,
    ) -> tuple[dict[str, int], int]:
        garbled = False
        for line, values in rows:
            if find_header(values):
                try:
                    return column_index(values, columns), line
                except RowError as e:
                    raise ReconciliationFileError(f"line {line}: {e.message}") from None
            try:
                source.check_row(values)
            except RowError:
                garbled = True
            if line >= HEADER_SEARCH_ROWS:
                break
        hint = (
            f"; the text does not decode as {source.encoding}: wrong encoding?" if garbled else ""
        )
        raise ReconciliationFileError(
            "no header row (with 发票号码 and 价税合计) in the first "
            f"{HEADER_SEARCH_ROWS} rows{hint}"
        )

    def _stage(
        self,
        rid: UUID,
        rows: Iterator[tuple[int, list[object]]],
        index: dict[str, int],
        source: ExportSource,
        merge: _Merge,
        progress: Progress | None,
    ) -> tuple[int, date | None, date | None]:
        days: list[date] = []  # the first and last issue dates, once there is a row
        staged = self.store.stage(rid, self._read(rows, index, source, merge, progress, days))
        if progress:
            progress(source.size, source.size)
        return staged, (days[0] if days else None), (days[1] if days else None)

    @staticmethod
    def _read(
        rows: Iterator[tuple[int, list[object]]],
        index: dict[str, int],
        source: ExportSource,
        merge: _Merge,
        progress: Progress | None,
        days: list[date],
    ) -> Iterator[PlatformRow]:
        """The rows that read, as they are read; the others become "invalid" findings."""
        n = 0
        first = last = None
        read_row = row_reader(index)
        check_row = source.check_row
        try:
            for line, values in rows:
                try:
                    blank = not "".join(values)  # type: ignore[arg-type]  # CSV: all text
                except TypeError:
                    blank = not any(v not in (None, "") for v in values)
                if blank:
                    continue
                try:
                    check_row(values)
                    row = read_row(line, values)
                except RowError as e:
                    note = f"{e.field}: {e.message} [{e.rule}]"
                    merge.add(Finding("invalid", line, None, note=note))
                    continue
                issued = row.issued_on
                if first is None or issued < first:
                    first = issued
                if last is None or issued > last:
                    last = issued
                yield row
                n += 1
                if progress and n % STAGE_CHUNK == 0:
                    progress(source.consumed, source.size)
        finally:
            if first is not None and last is not None:
                days[:] = [first, last]

    def _merge(
        self,
        merge: _Merge,
        rid: UUID,
        tenant_id: str,
        direction: str,
        period: tuple[date, date] | None,
    ) -> None:
        add = merge.add
        new = tuple.__new__  # Finding(...) without its defaults' handling: most rows are matched
        for c in self.store.classify(rid, tenant_id, direction, period):
            kind = c.kind
            if kind == "matched":
                assert c.status is not None
                matched = ("matched", c.line, c.invoice_key, c.invoice_id, (), None, None, "")
                add(new(Finding, matched), presence_action(c.status))
            elif kind == "mismatched":
                verdict = compare(c.platform, c.ledger)
                differences = tuple(verdict.differences)
                add(
                    Finding(verdict.cls, c.line, c.invoice_key, c.invoice_id, differences),
                    verdict.action,
                )
            elif kind == "unknown":
                add(
                    Finding(
                        "unknown", c.line, c.invoice_key, note="on the platform, not in the ledger"
                    )
                )
            elif kind == "duplicate":
                note = "the same invoice again in this file"
                add(Finding("duplicate", c.line, c.invoice_key, note=note))
            else:
                assert period is not None
                found = absent(c.ledger, period)
                if found is not None:
                    note = "" if found.action else "already missing"
                    add(
                        Finding("absent", None, c.invoice_key, c.invoice_id, note=note),
                        found.action,
                    )

    def ledger_actions(
        self, tenant_id: str, run: UUID, actions: list[tuple[int, UUID, str]], by: Provenance
    ) -> dict[int, tuple[str | None, int | None, str]]:
        """Apply a batch of reconciliation verdicts in one save; one by one if that conflicts."""
        evidence = f"reconciliation-run:{run}"
        decided: list[tuple[int, Invoice, str]] = []
        outcomes: dict[int, tuple[str | None, int | None, str]] = {}
        invoices = self._invoices(tenant_id, [invoice_id for _, invoice_id, _ in actions])
        for index, invoice_id, action in actions:
            invoice = invoices[invoice_id]
            try:
                self._decide(invoice, action, by, evidence)
            except DomainError as e:
                outcomes[index] = (None, None, f"no event: {e}")
                continue
            decided.append((index, invoice, type(invoice.pending_events[-1]).__name__))
        if not decided:
            return outcomes
        try:
            recordings = self.ledger.save(*(inv for _, inv, _ in decided))
        except IntegrityError:  # something changed meanwhile: decide each again, alone
            for index, invoice, _ in decided:
                action = next(a for i, _, a in actions if i == index)
                outcomes[index] = self._one(tenant_id, invoice.id, action, by, evidence)
            return outcomes
        positions = {r.domain_event.originator_id: r.notification.id for r in recordings}
        for index, invoice, event in decided:
            outcomes[index] = (event, positions[invoice.id], "")
        return outcomes

    def _invoices(self, tenant_id: str, invoice_ids: list[UUID]) -> dict[UUID, Invoice]:
        """Each invoice replayed from its events, as `get_invoice_state` replays it, with
        the streams of the whole batch read in a few queries rather than one each."""
        streams = self.ledger.event_log.select_streams(invoice_ids)
        mapper = self.ledger.mapper
        invoices: dict[UUID, Invoice] = {}
        for invoice_id in invoice_ids:
            aggregate: Any = None
            for row in streams.get(invoice_id, ()):
                event: Any = mapper.to_domain_event(row)  # type: ignore[arg-type]
                aggregate = event.mutate(aggregate)
            if not isinstance(aggregate, Invoice) or aggregate.tenant_id != tenant_id:
                aggregate = self.ledger.get_invoice_state(tenant_id, invoice_id)  # its error
            invoices[invoice_id] = aggregate
        return invoices

    def _one(
        self, tenant_id: str, invoice_id: UUID, action: str, by: Provenance, evidence: str
    ) -> tuple[str | None, int | None, str]:
        try:
            result = self.ledger.apply_to_invoice(
                tenant_id, invoice_id, by, lambda inv: self._decide(inv, action, by, evidence)
            )
        except DomainError as e:
            return None, None, f"no event: {e}"
        return ("Acknowledged" if action == "acknowledge" else "MarkedMissing", result.position, "")

    @staticmethod
    def _decide(invoice: Invoice, action: str, by: Provenance, evidence: str) -> None:
        if action == "acknowledge":
            invoice.acknowledge(by, evidence, by.occurred_at, "reconciliation")
        else:
            invoice.mark_missing(
                by,
                "reconciliation",
                "absent from the platform export that covers its issue date",
                evidence,
            )

    def _result(self, run: ReconciliationRun, replayed: bool) -> RunResult:
        s = run.summary
        return RunResult(
            run.id,
            replayed,
            run.file_sha256,
            s["period_from"],
            s["period_to"],
            s["rows"],
            dict(s["counts"]),
            s["events_caused"],
            s["findings_sha256"],
        )
