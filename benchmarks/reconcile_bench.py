"""Reconcile a platform export of N rows (default 1,000,000) against a ledger of N invoices on
PostgreSQL, and print rows per second and the reconciling process's peak memory.

The ledger is built through the application (batched issuance, 1% uploaded so matching causes
acknowledgements, 0.1% of those left out of the export so they come back absent), projected,
then `fapiao reconcile` runs as its own process: its peak RSS is measured alone (goal < 400 MB).
Usage: python benchmarks/reconcile_bench.py [--rows 1000000] [--admin-url ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from application.invoices.lifecycle import SubmitRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    n_rows = args.rows
    name = f"fapiao_recon_bench_{uuid.uuid4().hex[:8]}"
    url = f"{args.admin_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    workdir = Path(f"/tmp/{name}")
    workdir.mkdir()
    try:
        settings = Settings(database_url=url)
        migrate.upgrade(settings)
        services = build_services(settings)
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        by = Provenance("bench", Source.CLI, datetime(2026, 11, 1, tzinfo=UTC))
        print(f"building a ledger of {n_rows:,} invoices through the application ...")
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
        print(f"  issued and uploaded in {time.perf_counter() - t:.0f} s; projecting ...")
        t = time.perf_counter()
        for worker in services.workers.values():
            worker.catch_up()
        print(f"  projected in {time.perf_counter() - t:.0f} s")
        services.close()
        left_out = set(uploaded[::10])  # 0.1% of the ledger: uploaded, absent from the export
        path = workdir / "platform-export.csv"
        t = time.perf_counter()
        write_export(path, export_rows(n_rows, left_out))
        print(
            f"  wrote a {path.stat().st_size / 1e6:.0f} MB export ({n_rows - len(left_out):,}"
            f" rows) in {time.perf_counter() - t:.0f} s"
        )

        env = {**os.environ, "FAPIAO_DATABASE_URL": url, "COLUMNS": "120"}
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "api.cli.main", "reconcile", str(path), "--tenant", TENANT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - t
        if out.returncode:
            raise SystemExit(f"reconcile failed: {out.stderr}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows = n_rows - len(left_out)
        print(out.stdout.splitlines()[-1])
        print(
            f"\nreconciled {rows:,} export rows against {n_rows:,} ledger invoices on "
            f"PostgreSQL in {elapsed:.1f} s"
        )
        print(
            f"  {rows / elapsed:,.0f} rows/s (whole process: read, stage, merge, findings, "
            f"{len(uploaded):,} events)"
        )
        print(
            f"  peak RSS of the reconciling process: {peak_mb:.0f} MB (goal < 400 MB) "
            f"{'PASS' if peak_mb < 400 else 'FAIL'}"
        )
    finally:
        for f in workdir.glob("*"):
            f.unlink()
        workdir.rmdir()
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
