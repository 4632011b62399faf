"""SQL side of reconciliation: staged export rows, the ledger in key order, the findings."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, delete, select

from application.ports import Finding
from domain.monitoring.platform_export import PlatformRow
from domain.monitoring.reconciliation_run import LedgerView
from infrastructure.store.tables import invoice_status, reconciliation_findings, reconciliation_rows

STREAM = 2000


def _streaming(conn: Connection) -> Connection:
    """Rows fetched in chunks. PostgreSQL's server-side cursors need a transaction, and the
    read engine is in autocommit, so a streaming connection asks for one."""
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn.execution_options(stream_results=True, yield_per=STREAM)


def _bytewise(column: Any, dialect: str) -> Any:
    # The merge compares keys as Python strings: order them bytewise on PostgreSQL too.
    return column.collate("C") if dialect == "postgresql" else column


class SqlReconciliationStore:
    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self.engine = engine
        self.write_engine = write_engine

    def clear(self, run_id: UUID) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(delete(reconciliation_rows).where(reconciliation_rows.c.run_id == run_id))
            conn.execute(
                delete(reconciliation_findings).where(reconciliation_findings.c.run_id == run_id)
            )

    def stage(self, run_id: UUID, rows: Sequence[PlatformRow]) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(
                reconciliation_rows.insert(),
                [
                    {
                        "run_id": run_id,
                        "line": r.line,
                        "invoice_key": r.invoice_key,
                        "issued_on": r.issued_on,
                        "amount": r.amount,
                        "tax": r.tax,
                        "total": r.total,
                        "seller_code": r.seller_code,
                        "buyer_code": r.buyer_code,
                        "platform_status": r.platform_status,
                        "raw": r.raw,
                    }
                    for r in rows
                ],
            )

    def staged(self, run_id: UUID) -> Iterator[PlatformRow]:
        t = reconciliation_rows.c
        with self.engine.connect() as conn:
            query = (
                select(reconciliation_rows)
                .where(t.run_id == run_id)
                .order_by(_bytewise(t.invoice_key, conn.dialect.name), t.line)
            )
            result = _streaming(conn).execute(query)
            for r in result:
                yield PlatformRow(
                    r.line,
                    r.invoice_key,
                    r.issued_on,
                    r.amount,
                    r.tax,
                    r.total,
                    r.seller_code,
                    r.buyer_code,
                    r.platform_status,
                    r.raw,
                )

    def ledger(self, tenant_id: str, direction: str) -> Iterator[LedgerView]:
        c = invoice_status.c
        cols = (
            c.invoice_id,
            c.invoice_key,
            c.issued_on,
            c.amount,
            c.tax,
            c.total,
            c.seller_code,
            c.buyer_code,
            c.status,
        )
        with self.engine.connect() as conn:
            query = (
                select(*cols)
                .where(c.tenant_id == tenant_id, c.direction == direction)
                .order_by(_bytewise(c.invoice_key, conn.dialect.name))
            )
            result = _streaming(conn).execute(query)
            for r in result:
                yield LedgerView(*r)

    def add_findings(
        self, run_id: UUID, tenant_id: str, first_seq: int, findings: Sequence[Finding]
    ) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(
                reconciliation_findings.insert(),
                [
                    {
                        "run_id": run_id,
                        "seq": first_seq + i,
                        "tenant_id": tenant_id,
                        "class": f.cls,
                        "line": f.line,
                        "invoice_key": f.invoice_key,
                        "invoice_id": f.invoice_id,
                        "differences": json.dumps(list(f.differences), ensure_ascii=False),
                        "event": f.event,
                        "position": f.position,
                        "note": f.note,
                    }
                    for i, f in enumerate(findings)
                ],
            )

    def findings(self, run_id: UUID, cls: str | None = None) -> Iterator[Finding]:
        t = reconciliation_findings.c
        query = select(reconciliation_findings).where(t.run_id == run_id).order_by(t.seq)
        if cls:
            query = query.where(t["class"] == cls)
        with self.engine.connect() as conn:
            result = _streaming(conn).execute(query)
            for r in result:
                m = r._mapping
                yield Finding(
                    m["class"],
                    m["line"],
                    m["invoice_key"],
                    m["invoice_id"],
                    tuple(json.loads(m["differences"])),
                    m["event"],
                    m["position"],
                    m["note"],
                )

    def mismatched(self, tenant_id: str, limit: int, offset: int) -> tuple[list[Finding], int]:
        from sqlalchemy import func

        t = reconciliation_findings.c
        where = (t.tenant_id == tenant_id, t["class"] == "mismatched")
        query = (
            select(reconciliation_findings)
            .where(*where)
            .order_by(t.run_id, t.seq)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            rows = [
                Finding(
                    m["class"],
                    m["line"],
                    m["invoice_key"],
                    m["invoice_id"],
                    tuple(json.loads(m["differences"])),
                    m["event"],
                    m["position"],
                    m["note"],
                )
                for m in (r._mapping for r in conn.execute(query))
            ]
            total = conn.execute(
                select(func.count()).select_from(reconciliation_findings).where(*where)
            ).scalar_one()
        return rows, int(total)
