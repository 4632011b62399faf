"""Projection catch-up on PostgreSQL: our worker beside the decoded log read, in the same run.

Events: invoices issued, submitted and acknowledged in groups of 200 (issue 200, submit them,
acknowledge them; each group one save per step), as ledger_bench.py (c) walks them.
  ours       our invoice_status worker rebuilding the view from zero (`reset` then `catch_up`;
             the tables vacuumed before each run, outside the timing: the server runs without
             autovacuum, and a rebuild's deletes would otherwise bloat every later run)
  reference  the decoded log read: every stored event in order through the library's recorder
             (`select_notifications`, pages of the worker's batch size) and mapper
             (`to_domain_event`), nothing written
  extra      the library's ProjectionRunner (one transaction per event) over the same events,
             once, time-boxed (10 s quick, 30 s full: its rate over what it applied by then);
             and whether the view equals the event-at-a-time fold of the log
Runs of ours and the reference alternate. Goal (issue 15): ours >= 25,000 events/s.

Usage: python benchmarks/catch_up_bench.py [--quick] [--json] [--invoices N] [--batch N]
       [--no-library] [--admin-url postgresql://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eventsourcing.projection import ProjectionRunner  # noqa: E402
from ledger_bench import (  # noqa: E402
    TENANT,
    BenchLedger,
    LibraryStatusProjection,
    LibraryStatusView,
    by,
    draft,
)
from sqlalchemy import select  # noqa: E402

from application.invoices import status_view  # noqa: E402
from domain.invoices.invoice import Invoice  # noqa: E402
from domain.invoices.issuance import validate_draft  # noqa: E402
from infrastructure.bootstrap import Services, build_services  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402
from infrastructure.store.tables import invoice_status  # noqa: E402

GOAL = 25_000.0
GROUP = 200


def make_events(services: Services, invoices: int) -> int:
    ledger = services.ledger
    today = ledger.today()
    for _ in range(max(1, invoices // GROUP)):
        group = [
            Invoice.issue(TENANT, validate_draft(draft(), today)[0], by()) for _ in range(GROUP)
        ]
        ledger.save(*group)
        for inv in group:
            inv.submit(by(), "erp")
        ledger.save(*group)
        for inv in group:
            inv.acknowledge(by(), "ACK", datetime.now(UTC), "poll")
        ledger.save(*group)
    return int(ledger.recorder.max_notification_id() or 0)


def folded(services: Services) -> dict[Any, dict[str, Any]]:
    """invoice_status by the pure fold, one event at a time (these events need no links)."""
    rows: dict[Any, dict[str, Any]] = {}
    ledger = services.ledger
    position = 0
    while notes := ledger.recorder.select_notifications(
        start=position, limit=5000, inclusive_of_start=False
    ):
        for n in notes:
            event = ledger.mapper.to_domain_event(n)
            if status_view.handles(event):
                rows[event.originator_id] = status_view.fold(
                    rows.get(event.originator_id), event, n.id
                )
        position = notes[-1].id
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 21k events, 2 runs each")
    parser.add_argument("--json", action="store_true", help="a JSON summary as the last line")
    parser.add_argument("--invoices", type=int, help="invoices (3 events each)")
    parser.add_argument("--batch", type=int, help="the worker's batch size (default: settings)")
    parser.add_argument("--runs", type=int, help="runs of each, interleaved")
    parser.add_argument("--no-library", action="store_true", help="skip the library's runner")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    invoices = args.invoices or (7_000 if args.quick else 20_000)
    runs = args.runs or (2 if args.quick else 3)
    budget = 10.0 if args.quick else 30.0  # seconds the library's runner is given
    load = os.getloadavg()[0]

    name = f"fapiao_catchup_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{base}/{name}"
    started = time.monotonic()
    try:
        settings = Settings(database_url=url, pool_size=4, max_overflow=8)
        if args.batch:
            settings = settings.model_copy(update={"projection_batch_size": args.batch})
        migrate.upgrade(settings)
        services = build_services(settings)
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        ledger = services.ledger
        worker = services.worker("invoice_status")
        batch = worker.batch_size
        print(
            f"projection catch-up benchmark on PostgreSQL ({'quick' if args.quick else 'full'}), "
            f"{os.cpu_count()} cores, load {load:.2f}"
        )
        t = time.perf_counter()
        head = make_events(services, invoices)
        print(f"  {head:,} events of {invoices:,} invoices made in {time.perf_counter() - t:.1f} s")
        vacuum = psycopg.connect(url, autocommit=True)

        def ours() -> float:
            worker.reset()
            vacuum.execute("VACUUM invoice_status, status_entries, status_daily")
            gc.collect()
            t = time.perf_counter()
            n = worker.catch_up()
            elapsed = time.perf_counter() - t
            assert n == head and worker.position() == head, (n, worker.position(), head)
            return n / elapsed

        def decoded_read() -> float:
            gc.collect()
            t = time.perf_counter()
            n, position = 0, 0
            while notes := ledger.recorder.select_notifications(
                start=position, limit=batch, inclusive_of_start=False
            ):
                for note in notes:
                    ledger.mapper.to_domain_event(note)
                n += len(notes)
                position = notes[-1].id
            elapsed = time.perf_counter() - t
            assert n == head
            return n / elapsed

        figures: dict[str, list[float]] = {"reference": [], "ours": []}
        for _ in range(runs):
            figures["reference"].append(decoded_read())
            figures["ours"].append(ours())
        with services.engine.connect() as conn:
            view = {r.invoice_id: dict(r._mapping) for r in conn.execute(select(invoice_status))}
        equal = view == folded(services)

        library: float | None = None
        if not args.no_library:
            worker.reset()
            vacuum.execute("VACUUM invoice_status, status_entries, status_daily")
            env = {**settings.eventsourcing_env(), "POSTGRES_POOL_SIZE": "2"}
            t = time.perf_counter()
            with ProjectionRunner(
                application_class=BenchLedger,
                projection_class=LibraryStatusProjection,
                view_class=LibraryStatusView,
                env=env,
            ) as runner:
                try:  # time-boxed: its rate over what it applied in the time given
                    runner.wait(head, timeout=budget)
                except TimeoutError:
                    pass
                elapsed = time.perf_counter() - t
                library = worker.position() / elapsed
        vacuum.close()

        ours_med = statistics.median(figures["ours"])
        ref_med = statistics.median(figures["reference"])
        ratio = ours_med / ref_med
        print(f"\nprojection catch-up of invoice_status over {head:,} events, {runs} runs each")
        for label, key in (
            ("decoded log read (library recorder + mapper)", "reference"),
            (f"our worker (batches of {batch})", "ours"),
        ):
            f = figures[key]
            print(
                f"  {label:<46} {statistics.median(f):>9,.0f} events/s  "
                f"(min {min(f):,.0f}, max {max(f):,.0f})"
            )
        if library is not None:
            label = f"library ProjectionRunner (1 txn/event, {budget:.0f} s)"
            print(f"  {label:<46} {library:>9,.0f} events/s")
        print(f"  view equals the event-at-a-time fold: {equal}")
        passed = ours_med >= GOAL and equal
        print(
            f"  ours/decoded read {ratio:.2f}"
            + (f", ours/library runner {ours_med / library:.1f}x" if library else "")
            + f"; goal >= {GOAL:,.0f} events/s: {'PASS' if passed else 'FAIL'}"
            f"  (total {time.monotonic() - started:.0f} s)"
        )
        services.close()
        if args.json:
            row = {
                "path": "projection catch-up",
                "ours": round(ours_med),
                "unit": "events/s",
                "reference": round(ref_med),
                "reference_label": "decoded log read: library recorder pages + mapper, "
                "nothing written",
                "ratio": round(ratio, 3),
                "goal": f"ours >= {GOAL:.0f} events/s",
                "pass": passed,
                "extra": {
                    "events": head,
                    "batch_size": batch,
                    "runs_ours": [round(x) for x in figures["ours"]],
                    "runs_reference": [round(x) for x in figures["reference"]],
                    "library_runner_events_per_s": None if library is None else round(library),
                    "ratio_to_library_runner": None
                    if library is None
                    else round(ours_med / library, 1),
                    "view_equals_event_at_a_time_fold": equal,
                    "load_end": round(os.getloadavg()[0], 2),
                },
            }
            print(json.dumps({"bench": "catch_up_bench", "load": round(load, 2), "rows": [row]}))
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
