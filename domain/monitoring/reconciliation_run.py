"""Reconciliation against a platform export: the run (keyed by the file's SHA-256, so importing
the same file twice changes nothing) and the rules that classify each invoice.

Classes: matched; mismatched (present with different fields or status); absent (the ledger
believes it uploaded, the export covering its date lacks it); unknown (on the platform, not in
the ledger); duplicate (the key again in the same file); invalid (the row could not be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import AggregateCreated, BaseAggregate

from domain.base import LedgerEvent, Provenance
from domain.monitoring.platform_export import PlatformRow

RUN_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:reconciliation-run:v1")
CLASSES = ("matched", "mismatched", "absent", "unknown", "duplicate", "invalid")
# Ledger statuses in which the enterprise believes the platform has the invoice.
BELIEVED_UPLOADED = frozenset({"submitted", "acknowledged"})
# Ledger statuses for which presence on the platform settles the upload: acknowledge.
AWAITING = frozenset({"submitted", "submission_failed", "missing"})
# Ledger statuses for which absence from the export is news (see `absent`).
ABSENT_STATUSES = BELIEVED_UPLOADED | {"missing"}
EXPECTED_PLATFORM_STATUS = {
    "voided": "voided",
    "reversed": "reversed",
    "partially_reversed": "partially_reversed",
}


def run_id(tenant_id: str, file_sha256: str) -> UUID:
    return uuid5(RUN_NAMESPACE, f"{tenant_id}|{file_sha256}")


@dataclass(frozen=True)
class LedgerView:
    """What the ledger's status view says about one invoice."""

    invoice_id: UUID
    invoice_key: str
    issued_on: date
    amount: Decimal
    tax: Decimal
    total: Decimal
    seller_code: str
    buyer_code: str | None
    status: str


@dataclass(frozen=True)
class Verdict:
    cls: str
    differences: list[dict[str, str]]
    action: str | None  # "acknowledge" | "mark_missing" | None


def compare(row: PlatformRow, ledger: LedgerView) -> Verdict:
    """A key present on both sides: the same invoice, or the same key with other fields."""
    diffs = []
    for name in ("amount", "tax", "total", "issued_on"):
        mine, theirs = getattr(ledger, name), getattr(row, name)
        if mine != theirs:
            diffs.append({"field": name, "ledger": str(mine), "platform": str(theirs)})
    for party in ("seller_code", "buyer_code"):
        mine_party, theirs_party = getattr(ledger, party), getattr(row, party)
        if theirs_party is not None and (mine_party or "") != theirs_party:
            diffs.append({"field": party, "ledger": mine_party or "", "platform": theirs_party})
    expected = EXPECTED_PLATFORM_STATUS.get(ledger.status, "normal")
    if row.platform_status != expected:
        diffs.append({"field": "status", "ledger": ledger.status, "platform": row.platform_status})
    return Verdict("mismatched" if diffs else "matched", diffs, presence_action(ledger.status))


def presence_action(status: str) -> str | None:
    """What an invoice's presence on the platform does to it, from its ledger status."""
    return "acknowledge" if status in AWAITING else None


def absent(ledger: LedgerView, period: tuple[date, date]) -> Verdict | None:
    """A ledger invoice the export lacks: missing, if the export covers its date and the
    ledger believes the platform has it; otherwise not the export's business."""
    if not period[0] <= ledger.issued_on <= period[1]:
        return None
    if ledger.status in BELIEVED_UPLOADED:
        return Verdict("absent", [], "mark_missing")
    if ledger.status == "missing":
        return Verdict("absent", [], None)
    return None


class ReconciliationRun(BaseAggregate[UUID]):
    """One import of one platform export for one tenant."""

    TOPIC = "fapiao.reconciliation_run"

    class Event(LedgerEvent):
        pass

    class Started(Event, AggregateCreated):
        """An export file (by its SHA-256) is being reconciled against the ledger."""

        TOPIC = "fapiao.reconciliation_run.started.v1"
        tenant_id: str
        file_sha256: str
        file_name: str
        file_type: str
        encoding: str | None
        direction: str

        def apply(self, run: ReconciliationRun) -> None:
            run.tenant_id = self.tenant_id
            run.file_sha256 = self.file_sha256

    class Completed(Event):
        """The run classified every row and every ledger invoice of the period it covered.
        `findings_sha256` is the digest of the findings in order, so the stored findings can
        be checked against this event."""

        TOPIC = "fapiao.reconciliation_run.completed.v1"
        period_from: date | None
        period_to: date | None
        rows: int
        counts: dict[str, int]
        events_caused: int
        findings_sha256: str

        def apply(self, run: ReconciliationRun) -> None:
            run.completed = True
            run.summary = {
                "period_from": self.period_from,
                "period_to": self.period_to,
                "rows": self.rows,
                "counts": self.counts,
                "events_caused": self.events_caused,
                "findings_sha256": self.findings_sha256,
            }

    def __init__(self) -> None:
        self.tenant_id = ""
        self.file_sha256 = ""
        self.completed = False
        self.summary: dict[str, Any] = {}

    @classmethod
    def start(
        cls,
        tenant_id: str,
        sha256: str,
        file_name: str,
        file_type: str,
        encoding: str | None,
        direction: str,
        by: Provenance,
    ) -> ReconciliationRun:
        return cls._create(
            cls.Started,
            id=run_id(tenant_id, sha256),
            **by.fields(),
            tenant_id=tenant_id,
            file_sha256=sha256,
            file_name=file_name,
            file_type=file_type,
            encoding=encoding,
            direction=direction,
        )

    def complete(
        self,
        by: Provenance,
        period: tuple[date, date] | None,
        rows: int,
        counts: dict[str, int],
        events_caused: int,
        findings_sha256: str,
    ) -> None:
        self.trigger_event(
            self.Completed,
            **by.fields(),
            period_from=period[0] if period else None,
            period_to=period[1] if period else None,
            rows=rows,
            counts=counts,
            events_caused=events_caused,
            findings_sha256=findings_sha256,
        )
