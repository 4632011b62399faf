"""SQL side of reconciliation: staged export rows, their classification against the ledger,
the findings.

Bulk paths: rows and findings go in with COPY on PostgreSQL and executemany on SQLite, in
bounded chunks (each its own transaction, as the earlier row-by-row batches were); the join of
the staged rows with `invoice_status` runs in the database and streams back in key order, with
the columns of the few rows that need the domain's comparison only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, delete, select

from application.ports import Classified, Finding
from domain.monitoring.platform_export import PlatformRow
from domain.monitoring.reconciliation_run import (
    ABSENT_STATUSES,
    EXPECTED_PLATFORM_STATUS,
    LedgerView,
)
from infrastructure.store.tables import reconciliation_findings, reconciliation_rows

# The SQL below is built from fixed names and the domain's constants (quoted); values always
# go as parameters.
# ruff: noqa: S608

STREAM = 2000
COPY_CHUNK = 50_000  # rows per COPY statement and transaction: well within the statement timeout
SQLITE_CHUNK = 5000
ANALYZE_AFTER = 10_000  # staged rows
ROW_COLUMNS = (
    "run_id, line, invoice_key, issued_on, amount, tax, total, seller_code, buyer_code, "
    "platform_status, raw"
)
FINDING_COLUMNS = (
    'run_id, seq, tenant_id, "class", line, invoice_key, invoice_id, differences, event, '
    "position, note"
)


# Staged rows and findings need not wait for their own WAL flush: they count only once the
# run's Completed event is saved, and that commit waits for the log up to it, theirs included.
# A crash before then leaves a run that is not completed, whose staging starts again.
_NO_FLUSH = "SET LOCAL synchronous_commit = off"


def _streaming(conn: Connection) -> Connection:
    """Rows fetched in chunks. PostgreSQL's server-side cursors need a transaction, and the
    read engine is in autocommit, so a streaming connection asks for one."""
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn.execution_options(stream_results=True, yield_per=STREAM)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _classify_sql(postgres: bool, with_absent: bool) -> str:
    """One query: every staged row joined with the ledger invoice of its key (the first line
    of a key only; later lines are duplicates) and, for a period, the ledger invoices the export
    lacks; in bytewise key order, then line. The domain's `compare` stays the judge of what
    differs: this query only sorts out the rows that need it (`mismatched`), and the store's
    test checks that it and `compare` agree on every field."""
    expected = " ".join(
        f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in EXPECTED_PLATFORM_STATUS.items()
    )
    differs = (
        "s.amount <> l.amount OR s.tax <> l.tax OR s.total <> l.total "
        "OR s.issued_on <> l.issued_on "
        "OR (s.seller_code IS NOT NULL AND COALESCE(l.seller_code, '') <> s.seller_code) "
        "OR (s.buyer_code IS NOT NULL AND COALESCE(l.buyer_code, '') <> s.buyer_code) "
        f"OR s.platform_status <> CASE l.status {expected} ELSE 'normal' END"
    )
    platform = ("issued_on", "amount", "tax", "total", "seller_code", "buyer_code")
    platform += ("platform_status",)  # not `raw`: nothing compares it, and it is the widest
    ledger = ("issued_on", "amount", "tax", "total", "seller_code", "buyer_code")
    rows = (
        "SELECT s.invoice_key AS k, s.line AS line, "
        "CASE WHEN s.rn = 1 THEN l.invoice_id END AS invoice_id, "
        "CASE WHEN s.rn = 1 THEN l.status END AS status, "
        "CASE WHEN s.rn > 1 THEN 'duplicate' WHEN l.invoice_id IS NULL THEN 'unknown' "
        f"WHEN {differs} THEN 'mismatched' ELSE 'matched' END AS kind, "
        + ", ".join(f"s.{c} AS p_{c}" for c in platform)
        + ", "
        + ", ".join(f"l.{c} AS l_{c}" for c in ledger)
        + " FROM (SELECT r.invoice_key, r.line, "
        + ", ".join(f"r.{c}" for c in platform)
        + ", row_number() OVER (PARTITION BY r.invoice_key ORDER BY r.line) AS rn "
        "FROM reconciliation_rows r WHERE r.run_id = :run) s "
        "LEFT JOIN invoice_status l ON l.tenant_id = :tenant "
        "AND l.invoice_key = s.invoice_key AND l.direction = :direction"
    )
    statuses = ", ".join(_literal(s) for s in sorted(ABSENT_STATUSES))
    absent = (
        "SELECT l.invoice_key, NULL, l.invoice_id, l.status, 'absent', "
        + ", ".join("NULL" for _ in platform)
        + ", "
        + ", ".join(f"l.{c}" for c in ledger)
        + " FROM invoice_status l WHERE l.tenant_id = :tenant AND l.direction = :direction "
        f"AND l.issued_on BETWEEN :first AND :last AND l.status IN ({statuses}) "
        "AND NOT EXISTS (SELECT 1 FROM reconciliation_rows r "
        "WHERE r.run_id = :run AND r.invoice_key = l.invoice_key)"
    )
    # Columns other than the key's go out only where the service needs them: sorting and
    # sending a million rows' worth of them would cost more than the join.
    outer = ", ".join(f"CASE WHEN kind = 'mismatched' THEN p_{c} END" for c in platform)
    outer += ", " + ", ".join(
        f"CASE WHEN kind IN ('mismatched', 'absent') THEN l_{c} END" for c in ledger
    )
    union = f"{rows} UNION ALL {absent}" if with_absent else rows
    order = 'k COLLATE "C", line' if postgres else "k, line"
    sql = f"SELECT k, line, invoice_id, status, kind, {outer} FROM ({union}) AS u ORDER BY {order}"
    if postgres:
        for name in ("run", "tenant", "direction", "first", "last"):
            sql = sql.replace(f":{name}", f"%({name})s")
    return sql


_NULL = "\\N"  # COPY text's NULL
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_text(value: str) -> str:
    """A text field as COPY's text format reads it back: backslash, tab, newline and carriage
    return escaped."""
    if _COPY_SPECIAL.search(value) is None:
        return value
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _to_cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())  # as the Money column type stores it


def _cents(value: int) -> Decimal:
    return (Decimal(int(value)) / 100).quantize(Decimal("0.01"))


class SqlReconciliationStore:
    def __init__(self, engine: Engine, write_engine: Engine, chunk: int | None = None) -> None:
        self.engine = engine
        self.write_engine = write_engine
        self.postgres = write_engine.dialect.name == "postgresql"
        self.chunk = chunk or (
            COPY_CHUNK if self.postgres else SQLITE_CHUNK
        )  # rows per transaction

    def clear(self, run_id: UUID) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(delete(reconciliation_rows).where(reconciliation_rows.c.run_id == run_id))
            conn.execute(
                delete(reconciliation_findings).where(reconciliation_findings.c.run_id == run_id)
            )

    # ---- staging -----------------------------------------------------------------------------

    def stage(self, run_id: UUID, rows: Iterable[PlatformRow]) -> int:
        """Stage rows as they come, never holding more than one chunk; the count staged."""
        it = iter(rows)
        staged = 0
        while True:
            n = self._copy_rows(run_id, it) if self.postgres else self._insert_rows(run_id, it)
            staged += n
            if n == 0:
                break
        if self.postgres and staged >= ANALYZE_AFTER:
            # Fresh statistics before the join: planned on the table's old ones (autovacuum
            # comes later), a big export got a nested loop, quadratic in its rows.
            with self.write_engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE reconciliation_rows")
        return staged

    def _copy_rows(self, run_id: UUID, rows: Iterator[PlatformRow]) -> int:
        from psycopg.copy import QueuedLibpqWriter  # PostgreSQL only

        n = 0
        rid = str(run_id)  # as COPY's text reads it: formatted once, not once a row
        with self.write_engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(_NO_FLUSH)
            sql = f"COPY reconciliation_rows ({ROW_COLUMNS}) FROM STDIN"
            # A writer thread sends the data while this one reads and checks the next rows.
            with cursor.copy(sql, writer=QueuedLibpqWriter(cursor)) as copy:
                write = copy.write_row
                for r in islice(rows, self.chunk):
                    write(
                        (
                            rid,
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
                    )
                    n += 1
        return n

    def _insert_rows(self, run_id: UUID, rows: Iterator[PlatformRow]) -> int:
        rid = run_id.hex
        chunk = [
            (
                rid,
                r.line,
                r.invoice_key,
                r.issued_on.isoformat(),
                _to_cents(r.amount),
                _to_cents(r.tax),
                _to_cents(r.total),
                r.seller_code,
                r.buyer_code,
                r.platform_status,
                r.raw,
            )
            for r in islice(rows, self.chunk)
        ]
        if chunk:
            with self.write_engine.begin() as conn:
                conn.connection.driver_connection.executemany(  # type: ignore[union-attr]
                    f"INSERT INTO reconciliation_rows ({ROW_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    chunk,
                )
        return len(chunk)

    # ---- classification ----------------------------------------------------------------------

    def classify(
        self, run_id: UUID, tenant_id: str, direction: str, period: tuple[date, date] | None
    ) -> Iterator[Classified]:
        """Every staged row, and every ledger invoice of the period (if any) that the export
        lacks and whose status makes that news, in bytewise key order then line."""
        params: dict[str, Any] = {"tenant": tenant_id, "direction": direction}
        if period is not None:
            params["first"], params["last"] = period
        sql = _classify_sql(self.postgres, period is not None)
        with self.engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            if self.postgres:
                with driver.transaction():
                    driver.execute("SET LOCAL work_mem = '128MB'")
                    # A plan of a million rows costs past jit_above_cost, and compiling it took
                    # seconds: more than the JIT code saved on a join this plain.
                    driver.execute("SET LOCAL jit = off")
                    with driver.cursor(name="reconciliation_classify") as cursor:
                        cursor.itersize = STREAM
                        cursor.execute(sql, {**params, "run": run_id})
                        yield from self._classified(cursor, money=None, day=None, ident=None)
            else:
                if period is not None:
                    params["first"], params["last"] = (d.isoformat() for d in period)
                cursor = driver.execute(sql, {**params, "run": run_id.hex})
                try:
                    yield from self._classified(
                        cursor, money=_cents, day=date.fromisoformat, ident=UUID
                    )
                finally:
                    cursor.close()

    @staticmethod
    def _classified(cursor: Any, money: Any, day: Any, ident: Any) -> Iterator[Classified]:
        new = tuple.__new__  # a Classified without its keyword-handling constructor
        while rows := cursor.fetchmany(STREAM):
            for r in rows:
                key, line, invoice_id, status, kind = r[0], r[1], r[2], r[3], r[4]
                if ident is not None and invoice_id is not None:
                    invoice_id = ident(invoice_id)
                platform = ledger = None
                if kind == "mismatched" or kind == "absent":
                    lv = r[12:18]
                    if money is not None:
                        lv = (day(lv[0]), money(lv[1]), money(lv[2]), money(lv[3]), lv[4], lv[5])
                    ledger = LedgerView(invoice_id, key, *lv, status)
                    if kind == "mismatched":
                        pv = r[5:12]
                        if money is not None:
                            pv = (day(pv[0]), money(pv[1]), money(pv[2]), money(pv[3]), *pv[4:])
                        platform = PlatformRow(line, key, *pv, "")  # raw: not read back
                yield new(Classified, (kind, line, key, invoice_id, status, platform, ledger))

    # ---- findings ----------------------------------------------------------------------------

    def add_findings(
        self, run_id: UUID, tenant_id: str, first_seq: int, findings: Sequence[Finding]
    ) -> None:
        def differences(f: Finding) -> str:
            return json.dumps(list(f.differences), ensure_ascii=False) if f.differences else "[]"

        if self.postgres:
            # COPY's text format written here, a line per finding, rather than a row of
            # Python values for psycopg to adapt one by one: the same rows, in a third of the
            # time (text fields escaped as COPY reads them, None as \N).
            head = f"{run_id}\t"
            tenant = "\t" + _copy_text(tenant_id) + "\t"
            lines = []
            for i, f in enumerate(findings, first_seq):
                key, invoice_id, event, position = f.invoice_key, f.invoice_id, f.event, f.position
                lines.append(
                    f"{head}{i}{tenant}{_copy_text(f.cls)}\t"
                    f"{_NULL if f.line is None else int(f.line)}\t"
                    f"{_NULL if key is None else _copy_text(key)}\t"
                    f"{_NULL if invoice_id is None else invoice_id.hex}\t"
                    f"{_copy_text(differences(f))}\t"
                    f"{_NULL if event is None else _copy_text(event)}\t"
                    f"{_NULL if position is None else int(position)}\t"
                    f"{_copy_text(f.note)}\n"
                )
            with self.write_engine.begin() as conn:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.execute(_NO_FLUSH)
                sql = f"COPY reconciliation_findings ({FINDING_COLUMNS}) FROM STDIN"
                with cursor.copy(sql) as copy:
                    copy.write("".join(lines))
            return
        rows = [
            (
                run_id.hex,
                i,
                tenant_id,
                f.cls,
                f.line,
                f.invoice_key,
                f.invoice_id.hex if f.invoice_id else None,
                differences(f),
                f.event,
                f.position,
                f.note,
            )
            for i, f in enumerate(findings, first_seq)
        ]
        with self.write_engine.begin() as conn:
            conn.connection.driver_connection.executemany(  # type: ignore[union-attr]
                f"INSERT INTO reconciliation_findings ({FINDING_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
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
