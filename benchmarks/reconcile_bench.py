"""Reconcile a platform export of N rows (default 1,000,000; --quick 100,000) against a ledger
of N invoices on PostgreSQL: rows per second of the whole `fapiao reconcile` process, and its
peak memory, beside a COPY-class reference measured in the same run.

Setup (not measured): the ledger is issued through the application (batched issuance), 1%
uploaded so matching causes acknowledgements, 0.1% of those left out of the export so they come
back absent; `invoice_status` is brought up to date and the tables analysed (autovacuum's job
on a live database), and the database becomes a template. Each round then copies the template
and runs `fapiao reconcile` in its own process (read, check, stage, classify, findings, events)
and, interleaved, the reference: the same file's rows read with the csv module and streamed
with COPY into a temporary table of the same database, no checks.
Goal (issue 15): ours >= 25,000 rows/s and peak RSS < 200 MB.
Usage: python benchmarks/reconcile_bench.py [--quick] [--rows N] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from application.invoices.lifecycle import SubmitRequest  # noqa: E402
from domain.base import Provenance, Source  # noqa: E402
from domain.invoices.issuance import InvoiceDraft, PartyDraft  # noqa: E402
from infrastructure.bootstrap import build_services  # noqa: E402
from infrastructure.monitoring.platform_export_reader import write_export  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402

TENANT = "91110108769914581E"
BUYER = "91330100716105852F"
FIRST = date(2026, 10, 1)


def key(n: int) -> str:
    return f"26112{n:015d}"


def day(n: int) -> date:
    return FIRST + timedelta(days=n % 28)


def draft(n: int) -> InvoiceDraft:
    return InvoiceDraft(
        number=key(n),
        invoice_type="digital_ordinary",
        issued_on=day(n),
        seller=PartyDraft("北京云帆科技有限公司", TENANT),
        buyer=PartyDraft("杭州青禾贸易有限公司", BUYER),
        amount="1000.00",
        tax="60.00",
        total="1060.00",
        tax_rate="0.06",
    )


def export_rows(n_rows: int, left_out: set[int]) -> Iterator[list[object]]:
    for n in range(n_rows):
        if n in left_out:
            continue
        yield [
            str(n + 1),
            "",
            "",
            key(n),
            TENANT,
            "北京云帆科技有限公司",
            BUYER,
            "杭州青禾贸易有限公司",
            f"{day(n):%Y-%m-%d} 10:00:00",
            "1,000.00",
            "60.00",
            "1,060.00",
            "电子发票服务平台",
            "数电票（普通发票）",
            "正常",
            "是",
            "正常",
            "开票员",
            "",
        ]


GOAL_ROWS_PER_SECOND = 25_000
GOAL_RSS_MB = 200


def build_ledger(url: str, n_rows: int) -> list[int]:
    """The ledger of the benchmark; the numbers of the invoices it uploaded."""
    settings = Settings(database_url=url)
    migrate.upgrade(settings)
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        by = Provenance("bench", Source.CLI, datetime(2026, 11, 1, tzinfo=UTC))
        t = time.perf_counter()
        batch = 1000
        for start in range(0, n_rows, batch):
            services.ledger.issue_invoices(
                TENANT, [draft(n) for n in range(start, min(start + batch, n_rows))], by
            )
        uploaded = list(range(0, n_rows, 100))  # 1%
        for n in uploaded:
            invoice_id = services.ledger.resolve_invoice_id(TENANT, key(n))
            services.ledger.change_invoice(TENANT, invoice_id, SubmitRequest(channel="erp"), by)
        services.bring_up_to_date("invoice_status")
        print(f"  issued, uploaded and projected in {time.perf_counter() - t:.0f} s", flush=True)
    finally:
        services.close()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    return uploaded


def reference(url: str, path: Path) -> float:
    """Rows/s of reading the export with the csv module and streaming it into a temporary
    table with COPY: what a loader that checks nothing does."""
    t = time.perf_counter()
    n = 0
    with psycopg.connect(url) as c, path.open(encoding="utf-8-sig", newline="") as f:
        c.execute(
            "CREATE TEMP TABLE export_rows (" + ", ".join(f"c{i} text" for i in range(19)) + ")"
        )
        reader = csv.reader(f)
        next(reader), next(reader)  # the title and the header
        with c.cursor().copy("COPY export_rows FROM STDIN") as copy:
            for row in reader:
                copy.write_row(row)
                n += 1
        c.commit()
    return n / (time.perf_counter() - t)


def ours(url: str, path: Path, rows: int) -> tuple[float, str]:
    """Rows/s of `fapiao reconcile` as its own process, and its summary line."""
    env = {**os.environ, "FAPIAO_DATABASE_URL": url, "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "api.cli.main", "reconcile", str(path), "--tenant", TENANT]
    t = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"reconcile failed: {out.stderr}")
    return rows / elapsed, out.stdout.strip().splitlines()[-1]


def peak_child_rss_mb() -> float:
    """The largest peak RSS of the processes this one waited for: the reconciling ones."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="runs of ours and the reference")
    parser.add_argument("--json", action="store_true", help="a JSON summary as the last line")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    n_rows = args.rows or (100_000 if args.quick else 1_000_000)
    load = os.getloadavg()[0]
    print(
        f"reconciliation benchmark on PostgreSQL: {n_rows:,} rows, {os.cpu_count()} cores, "
        f"load {load:.2f}",
        flush=True,
    )
    name = f"fapiao_recon_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    template = f"{name}_ledger"
    workdir = Path(f"/tmp/{name}")
    workdir.mkdir()
    made: list[str] = []

    def create(db: str, like: str | None = None) -> str:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{db}"' + (f' TEMPLATE "{like}"' if like else ""))  # type: ignore[arg-type]
        made.append(db)
        return f"{base}/{db}"

    try:
        print(f"building a ledger of {n_rows:,} invoices through the application ...", flush=True)
        uploaded = build_ledger(create(template), n_rows)
        left_out = set(uploaded[::10])  # 0.1% of the ledger: uploaded, absent from the export
        rows = n_rows - len(left_out)
        path = workdir / "platform-export.csv"
        write_export(path, export_rows(n_rows, left_out))
        print(f"  wrote a {path.stat().st_size / 1e6:.0f} MB export ({rows:,} rows)", flush=True)

        ours_rates: list[float] = []
        reference_rates: list[float] = []
        summary = ""
        for i in range(args.rounds):
            url = create(f"{name}_r{i}", template)
            reference_rates.append(reference(url, path))
            rate, summary = ours(url, path, rows)
            ours_rates.append(rate)
            print(
                f"  round {i + 1}: ours {rate:,.0f} rows/s, reference "
                f"{reference_rates[-1]:,.0f} rows/s",
                flush=True,
            )
        reference_rates.append(reference(f"{base}/{template}", path))
        rss = peak_child_rss_mb()
        mine, theirs = statistics.median(ours_rates), statistics.median(reference_rates)
        passed = mine >= GOAL_ROWS_PER_SECOND and rss < GOAL_RSS_MB
        print(summary)
        print(
            f"\nreconciled {rows:,} export rows against {n_rows:,} ledger invoices "
            f"({len(uploaded):,} uploaded: acknowledgements and {len(left_out):,} absent)"
        )
        print(
            f"  ours (whole `fapiao reconcile` process): {mine:,.0f} rows/s, median of "
            f"{len(ours_rates)}; peak RSS {rss:.0f} MB"
        )
        print(
            f"  reference (csv + COPY into a temp table): {theirs:,.0f} rows/s; "
            f"ratio {mine / theirs:.2f}"
        )
        print(
            f"  goal >= {GOAL_ROWS_PER_SECOND:,} rows/s and RSS < {GOAL_RSS_MB} MB: "
            f"{'PASS' if passed else 'FAIL'}"
        )
        if args.json:
            row = {
                "path": "reconciliation, 1M rows",
                "ours": round(mine),
                "unit": "rows/s",
                "reference": round(theirs),
                "reference_label": "csv module + COPY of the same rows into a temp table",
                "ratio": round(mine / theirs, 3),
                "goal": f"ours >= {GOAL_ROWS_PER_SECOND} rows/s and rss_mb < {GOAL_RSS_MB}",
                "pass": passed,
                "extra": {
                    "rss_mb": round(rss, 1),
                    "rows": rows,
                    "ledger_invoices": n_rows,
                    "ours_runs": [round(r) for r in ours_rates],
                    "reference_runs": [round(r) for r in reference_rates],
                },
            }
            print(json.dumps({"bench": "reconcile_bench", "load": load, "rows": [row]}))
    finally:
        for f in workdir.glob("*"):
            f.unlink()
        workdir.rmdir()
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            for db in reversed(made):
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
