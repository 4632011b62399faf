"""Batched issuance on PostgreSQL: `issue_invoices` (100 drafts per call) beside the library's
batched save of the same invoices, in one run, interleaved.

  ours       InvoiceLedger.issue_invoices(100 drafts): validation, events, one insert
  reference  Application.save(*100 Invoice aggregates), drafts validated beforehand (untimed),
             through the same recorder, table and lock
  extra      the same rows by raw executemany and by COPY under the same table lock (ceilings),
             ours with an Idempotency-Key (its receipt in the same insert), and ours' write
             half alone on pre-validated drafts (like for like with the reference)

Goal (issue 15): ours >= 2x the reference. Creates and drops its own database.
Usage: python benchmarks/batch_issue_bench.py [--quick] [--json] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventsourcing.persistence import StoredEvent  # noqa: E402
from ledger_bench import TENANT, by, draft  # noqa: E402

from application.dto import Idempotency  # noqa: E402
from application.invoices.batch_issue import record_batch, validate_batch  # noqa: E402
from application.invoices.ledger import InvoiceLedger  # noqa: E402
from domain.invoices.invoice import Invoice  # noqa: E402
from domain.invoices.issuance import InvoiceDraft, validate_draft  # noqa: E402
from infrastructure.bootstrap import build_services  # noqa: E402
from infrastructure.clock import SystemClock  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402

PER_SAVE = 100
GOAL = 2.0


class BenchLedger(InvoiceLedger):
    name = "Ledger"

    def __init__(self, env: Any = None) -> None:
        super().__init__(dict(env or {}), SystemClock())


def batches(n: int) -> list[list[InvoiceDraft]]:
    return [[draft() for _ in range(PER_SAVE)] for _ in range(n // PER_SAVE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="last line: the JSON result")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    n, reps = (1000, 5) if args.quick else (5000, 7)
    load = os.getloadavg()[0]

    name = f"fapiao_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{base}/{name}"
    settings = Settings(database_url=url, pool_size=4, max_overflow=8)
    try:
        migrate.upgrade(settings)
        services = build_services(settings)
        ledger = services.ledger
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        bare = BenchLedger(settings.eventsourcing_env())
        today = ledger.today()
        raw = psycopg.connect(url)
        print(
            f"batched issuance on PostgreSQL ({'quick' if args.quick else 'full'}), "
            f"{PER_SAVE} invoices per save, {n} per run, {reps} runs interleaved, "
            f"{os.cpu_count()} cores, load {load:.2f}"
        )
        keys = iter(range(10**9))

        def ours() -> float:
            work = batches(n)
            t = time.perf_counter()
            for b in work:
                ledger.issue_invoices(TENANT, b, by())
            return n / (time.perf_counter() - t)

        def ours_keyed() -> float:
            work = batches(n)
            t = time.perf_counter()
            for b in work:
                ledger.issue_invoices(TENANT, b, by(), Idempotency(f"k-{next(keys)}", "fp"))
            return n / (time.perf_counter() - t)

        def ours_write() -> float:
            checked = [validate_batch(b, today) for b in batches(n)]
            t = time.perf_counter()
            for c in checked:
                record_batch(ledger, TENANT, c, by(), None)
            return n / (time.perf_counter() - t)

        def library() -> float:
            facts = [[validate_draft(d, today)[0] for d in b] for b in batches(n)]
            t = time.perf_counter()
            for b in facts:
                bare.save(*(Invoice.issue(TENANT, f, by()) for f in b))
            return n / (time.perf_counter() - t)

        def rows() -> list[list[StoredEvent]]:
            p = by()
            return [
                [
                    ledger.mapper.to_stored_event(
                        Invoice.issue(TENANT, validate_draft(d, today)[0], p).collect_events()[0]
                    )
                    for d in b
                ]
                for b in batches(n)
            ]

        def executemany() -> float:
            work = rows()
            t = time.perf_counter()
            for b in work:
                with raw.transaction(), raw.cursor() as cur:
                    cur.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
                    cur.executemany(
                        "INSERT INTO ledger_events (originator_id, originator_version, topic, "
                        "state) VALUES (%s, %s, %s, %s)",
                        [(e.originator_id, e.originator_version, e.topic, e.state) for e in b],
                    )
            return n / (time.perf_counter() - t)

        def copy() -> float:
            work = rows()
            t = time.perf_counter()
            for b in work:
                with raw.transaction(), raw.cursor() as cur:
                    cur.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
                    with cur.copy(
                        "COPY ledger_events (originator_id, originator_version, topic, state) "
                        "FROM STDIN"
                    ) as cp:
                        for e in b:
                            cp.write_row((e.originator_id, e.originator_version, e.topic, e.state))
            return n / (time.perf_counter() - t)

        runs: dict[str, Callable[[], float]] = {
            "library": library,
            "ours": ours,
            "ours_keyed": ours_keyed,
            "ours_write": ours_write,
            "executemany": executemany,
            "copy": copy,
        }
        for fn in runs.values():  # warm-up: connections, caches, prepared statements
            fn()
        figures: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(reps):
            for key, fn in runs.items():
                figures[key].append(fn())
        med = {k: statistics.median(v) for k, v in figures.items()}
        labels = {
            "library": "library Application.save(*100 aggregates)",
            "ours": "application issue_invoices(100 drafts)",
            "ours_keyed": "issue_invoices(100) with an Idempotency-Key",
            "ours_write": "its write half alone (pre-validated, as ref.)",
            "executemany": "raw executemany of the same rows (locked)",
            "copy": "raw COPY of the same rows (locked)",
        }
        for key, label in labels.items():
            v = figures[key]
            print(
                f"  {label:<46} {med[key]:>9,.0f} invoices/s  "
                f"(min {min(v):,.0f}, max {max(v):,.0f})"
            )
        ratio = med["ours"] / med["library"]
        passed = ratio >= GOAL
        print(
            f"  write half / library (both pre-validated): {med['ours_write'] / med['library']:.2f}"
        )
        print(
            f"  ratio ours/library: {ratio:.2f}  (goal >= {GOAL:.1f})  "
            f"{'PASS' if passed else 'FAIL'}"
        )
        raw.close()
        bare.close()
        services.close()
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    if args.json:
        row = {
            "path": "batched issuance, 100 per save",
            "ours": round(med["ours"], 1),
            "unit": "invoices/s",
            "reference": round(med["library"], 1),
            "reference_label": "library Application.save(*100 Invoice aggregates), pre-validated",
            "ratio": round(ratio, 3),
            "goal": f"ratio >= {GOAL}",
            "pass": passed,
            "extra": {
                "ours_with_idempotency_key": round(med["ours_keyed"], 1),
                "ours_write_half_prevalidated": round(med["ours_write"], 1),
                "write_half_ratio": round(med["ours_write"] / med["library"], 3),
                "executemany_rows_per_s": round(med["executemany"], 1),
                "copy_rows_per_s": round(med["copy"], 1),
                "runs": reps,
                "invoices_per_run": n,
                "runs_ours": [round(x) for x in figures["ours"]],
                "runs_reference": [round(x) for x in figures["library"]],
            },
        }
        print(json.dumps({"bench": Path(__file__).stem, "load": round(load, 2), "rows": [row]}))


if __name__ == "__main__":
    main()
