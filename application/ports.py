"""What the application needs from the outside, as Protocols; adapters live in infrastructure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol
from uuid import UUID


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


@dataclass(frozen=True)
class StoredEventRow:
    """One stored event with its log position and the database's `recorded_at`."""

    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes
    recorded_at: datetime


class StateEncoder(Protocol):
    """Encodes an event's attributes (`vars(event)`) to exactly the state bytes the
    application's mapper would store for it (the batch path's faster way to the same row)."""

    def state(self, attributes: dict[str, Any], class_version: int) -> bytes: ...


class EventLog(Protocol):
    """Extra reads our recorders offer beyond the library's (positions and recorded_at), and
    the batch path's insert."""

    def position_of(self, originator_id: UUID, version: int) -> int | None: ...

    def select_stream(self, originator_id: UUID) -> Sequence[StoredEventRow]: ...

    def select_streams(self, originator_ids: Sequence[UUID]) -> dict[UUID, list[StoredEventRow]]:
        """`select_stream` of each (an empty list for a stream with no events), in a few
        queries rather than one per stream."""
        ...

    def select_rows(self, after: int, limit: int) -> Sequence[StoredEventRow]: ...

    def insert_rows(
        self,
        ids: Sequence[UUID],
        versions: Sequence[int],
        topics: Sequence[str],
        states: Sequence[bytes],
    ) -> Sequence[int]:
        """Stored events given column by column, inserted in one transaction under the
        event table's lock as the library's `insert_events` does; their positions in order.
        A row whose stream and version exist already fails it whole (IntegrityError)."""
        ...


@dataclass(frozen=True)
class InvoiceFilter:
    status: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    seller: str | None = None
    buyer: str | None = None
    min_total: Decimal | None = None
    max_total: Decimal | None = None


@dataclass(frozen=True)
class DueTimer:
    """An invoice awaiting acknowledgement of upload `attempt`, due at `due_at`."""

    invoice_id: UUID
    tenant_id: str
    attempt: int
    started_at: datetime
    window_seconds: int
    due_at: datetime


class TimerReader(Protocol):
    def due(self, now: datetime, limit: int) -> list[DueTimer]: ...


class Finding(NamedTuple):
    """One classified row or ledger invoice of a reconciliation run. (A named tuple: an
    export of a million rows makes a million.)"""

    cls: str
    line: int | None
    invoice_key: str | None
    invoice_id: UUID | None = None
    differences: tuple[dict[str, str], ...] = ()
    event: str | None = None
    position: int | None = None
    note: str = ""


class Classified(NamedTuple):
    """A staged row or a ledger invoice as the store's join sorted it out.

    kind: matched (the same on both sides), mismatched (some field differs: `platform` and
    `ledger` are given for the domain's comparison, the platform row without its raw
    text), unknown (no ledger invoice), duplicate (a
    later line of a key already seen), absent (a ledger invoice of the period the export lacks,
    `ledger` given)."""

    kind: str
    line: int | None
    invoice_key: str
    invoice_id: UUID | None
    status: str | None  # the ledger's
    platform: Any = None  # PlatformRow
    ledger: Any = None  # LedgerView


class ReconciliationStore(Protocol):
    """Staging of export rows, their classification against the ledger, and the findings."""

    def clear(self, run_id: UUID) -> None: ...

    def stage(self, run_id: UUID, rows: Iterable[Any]) -> int:
        """Stage PlatformRows as they come, in bounded chunks; the number staged."""
        ...

    def classify(
        self, run_id: UUID, tenant_id: str, direction: str, period: tuple[date, date] | None
    ) -> Iterator[Classified]:
        """Each staged row, and each ledger invoice of `period` the export lacks whose status
        makes that news, ordered by invoice key (bytewise) then line."""
        ...

    def add_findings(
        self, run_id: UUID, tenant_id: str, first_seq: int, findings: Sequence[Finding]
    ) -> None: ...

    def findings(self, run_id: UUID, cls: str | None = None) -> Iterator[Finding]: ...


class ExportSource(Protocol):
    """A platform export being read: rows with their line numbers, and progress so far."""

    file_type: str
    encoding: str | None
    size: int
    consumed: int

    def rows(self) -> Iterator[tuple[int, list[object]]]: ...

    def check_row(self, values: list[object]) -> None:
        """Raise RowError if the row's bytes did not decode in the file's encoding."""
        ...


@dataclass(frozen=True)
class PlatformNotice:
    """What the platform says about an upload, once it says it: acknowledged or rejected."""

    invoice_key: str
    kind: str  # "acknowledged" | "rejected"
    at: datetime
    platform_ref: str = ""
    reason_code: str = ""
    message: str = ""


class PlatformRefusedError(Exception):
    """The platform refused the upload outright (maintenance, outage): nothing was received."""

    def __init__(self, reason_code: str, detail: str) -> None:
        self.reason_code, self.detail = reason_code, detail
        super().__init__(f"{reason_code}: {detail}")


class TaxPlatform(Protocol):
    """The tax authority's e-invoice platform, as the enterprise experiences it."""

    def submit(self, tenant_id: str, invoice: dict[str, Any], at: datetime) -> None:
        """Upload; raises PlatformRefusedError when refused. Acceptance is not acknowledgement."""
        ...

    def notices(self, until: datetime) -> list[PlatformNotice]:
        """Acknowledgements and rejections that became available up to `until`, once each."""
        ...

    def export(
        self, tenant_id: str, period: tuple[date, date], path: Any, file_type: str = "csv"
    ) -> Any:
        """The platform's own export of the invoices it holds, in its real format."""
        ...


class AttachmentStore(Protocol):
    """Content-addressed file storage: a file is kept once under its SHA-256."""

    def put(self, stream: Any, name: str) -> Any:
        """Store (if new) and return an AttachmentRef; refuse bad files, keeping nothing."""
        ...

    def staged(self, stream: Any, name: str) -> AbstractContextManager[Any]:
        """`put`, for a block: a file newly stored is removed again if the block raises."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def read(self, sha256: str) -> bytes: ...
