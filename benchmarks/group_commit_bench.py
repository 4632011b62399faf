"""Group commit on PostgreSQL: single commands from 8 concurrent clients, beside the raw
single-row commit under the library's table lock at the same concurrency.

  ours      issue_invoice through the application (validate, decide, save) from 8 client
            threads, with FAPIAO_GROUP_COMMIT on; and the same with it off, beside it
  reference 8 threads each doing BEGIN; LOCK TABLE ledger_events IN EXCLUSIVE MODE; INSERT one
            row (a real invoice's stored event, fresh id); COMMIT, into the same table

Runs are interleaved (on, off, reference, one client on and off; the order rotated each
round) and the medians compared. Goal (issue 15):
ours (grouping on) >= 0.7x the reference. Creates and drops its own database.

Usage: python benchmarks/group_commit_bench.py [--quick] [--json] [--clients 8]
       [--admin-url postgresql://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger_bench import TENANT, by, draft  # noqa: E402

from infrastructure.bootstrap import Services, build_services  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402

GOAL = 0.7
# One run: (commands, seconds, per-command latencies).
Measure = Callable[[], tuple[int, float, list[float]]]


def in_threads(clients: int, work: Callable[[int], list[float]]) -> tuple[float, list[float]]:
    """Run `work(i)` in `clients` threads started together; (seconds, all latencies)."""
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def client(i: int) -> None:
        barrier.wait()
        try:
            latencies[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - reported after the run
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed, [x for lat in latencies for x in lat]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Run:
    """One configuration's runs: rates (per second) and per-command latencies."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.latencies: list[float] = []

    def add(self, n: int, elapsed: float, latencies: list[float]) -> None:
        self.rates.append(n / elapsed)
        self.latencies.extend(latencies)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def issue_run(
    services: Services, clients: int, per_client: int
) -> Callable[[], tuple[int, float, list[float]]]:
    def run() -> tuple[int, float, list[float]]:
        drafts = [[draft() for _ in range(per_client)] for _ in range(clients)]

        def work(i: int) -> list[float]:
            mine = []
            for d in drafts[i]:
                t = time.perf_counter()
                services.ledger.issue_invoice(TENANT, d, by())
                mine.append(time.perf_counter() - t)
            return mine

        elapsed, lat = in_threads(clients, work)
        return clients * per_client, elapsed, lat

    return run


def raw_run(
    url: str, clients: int, per_client: int, topic: str, state: bytes
) -> Callable[[], tuple[int, float, list[float]]]:
    def run() -> tuple[int, float, list[float]]:
        conns = [psycopg.connect(url) for _ in range(clients)]
        ids = [[uuid.uuid4() for _ in range(per_client)] for _ in range(clients)]

        def work(i: int) -> list[float]:
            conn = conns[i]
            mine = []
            for oid in ids[i]:
                t = time.perf_counter()
                with conn.transaction():
                    conn.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
                    conn.execute(
                        "INSERT INTO ledger_events (originator_id, originator_version, topic, "
                        "state) VALUES (%s, 1, %s, %s)",
                        (oid, topic, state),
                    )
                mine.append(time.perf_counter() - t)
            return mine

        try:
            elapsed, lat = in_threads(clients, work)
        finally:
            for c in conns:
                c.close()
        return clients * per_client, elapsed, lat

    return run


def group_stats(services: Services) -> tuple[int, int]:
    """(transactions, commands) the group committer has saved, or (0, 0) without one."""
    group = getattr(services.ledger.recorder, "group", None)
    if group is None:
        return 0, 0
    return group.transactions, group.commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", action="store_true", help="print the JSON summary last")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--wait-ms", type=float, default=None, help="FAPIAO_GROUP_COMMIT_WAIT_MS (default: its)"
    )
    parser.add_argument(
        "--max-size", type=int, default=None, help="FAPIAO_GROUP_COMMIT_MAX_SIZE (default: its)"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    clients = args.clients
    per_client, reps = (60, 3) if args.quick else (250, 5)
    load = os.getloadavg()[0]

    name = f"fapiao_gcbench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{base}/{name}"
    pool: dict[str, Any] = {"pool_size": clients + 2, "max_overflow": 4}
    knobs: dict[str, Any] = {}
    if args.wait_ms is not None:
        knobs["group_commit_wait_ms"] = args.wait_ms
    if args.max_size is not None:
        knobs["group_commit_max_size"] = args.max_size
    started = time.monotonic()
    try:
        migrate.upgrade(Settings(database_url=url))
        on = build_services(Settings(database_url=url, group_commit=True, **pool, **knobs))
        off = build_services(Settings(database_url=url, group_commit=False, **pool))
        on.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        first = off.ledger.issue_invoice(TENANT, draft(), by())
        row = off.ledger.event_log.select_stream(first.invoice_id)[0]
        print(
            f"group commit benchmark on PostgreSQL ({'quick' if args.quick else 'full'}), "
            f"{os.cpu_count()} cores, load {load:.2f}, {clients} clients x {per_client} "
            f"commands, {reps} runs interleaved; grouping on: "
            f"wait {on.settings.group_commit_wait_ms} ms, at most "
            f"{on.settings.group_commit_max_size} a group"
        )
        runs: dict[str, Measure] = {
            "on": issue_run(on, clients, per_client),
            "off": issue_run(off, clients, per_client),
            "raw": raw_run(url, clients, per_client, row.topic, row.state),
            "on_1": issue_run(on, 1, per_client),
            "off_1": issue_run(off, 1, per_client),
        }
        for fn in (runs["on"], runs["off"], runs["raw"]):  # warm-up (connections, plans)
            fn()
        results = {k: Run() for k in runs}
        tx0, cmd0 = group_stats(on)
        keys = list(runs)
        for rep in range(reps):  # interleaved, the order rotated each round: no one goes first
            for key in keys[rep % len(keys) :] + keys[: rep % len(keys)]:
                results[key].add(*runs[key]())
        tx1, cmd1 = group_stats(on)
        grouped_commands = cmd1 - cmd0
        mean_group = grouped_commands / (tx1 - tx0) if tx1 > tx0 else 1.0

        def show(label: str, r: Run) -> None:
            print(
                f"  {label:<52} {r.median:>8,.0f} commands/s  (min {min(r.rates):,.0f}, "
                f"max {max(r.rates):,.0f}; p50 {pct(r.latencies, 0.5):.1f} ms, "
                f"p99 {pct(r.latencies, 0.99):.1f} ms)"
            )

        show(f"issue_invoice, {clients} clients, grouping on", results["on"])
        show(f"issue_invoice, {clients} clients, grouping off", results["off"])
        show(f"raw locked single-row commit, {clients} clients", results["raw"])
        show("issue_invoice, 1 client, grouping on", results["on_1"])
        show("issue_invoice, 1 client, grouping off", results["off_1"])
        ratio = results["on"].median / results["raw"].median
        off_ratio = results["off"].median / results["raw"].median
        print(
            f"  commands per transaction with grouping on (all runs): {mean_group:.2f}\n"
            f"  ratio on/raw {ratio:.2f} (goal >= {GOAL}) {'PASS' if ratio >= GOAL else 'FAIL'}; "
            f"off/raw {off_ratio:.2f}; total {time.monotonic() - started:.0f} s"
        )
        on.close()
        off.close()
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    if args.json:
        row_out = {
            "path": f"single command, {clients} concurrent clients",
            "ours": round(results["on"].median, 1),
            "unit": "commands/s",
            "reference": round(results["raw"].median, 1),
            "reference_label": f"raw single-row commit under the table lock, {clients} clients",
            "ratio": round(ratio, 3),
            "goal": f"ratio >= {GOAL}",
            "pass": ratio >= GOAL,
            "extra": {
                "grouping_off": round(results["off"].median, 1),
                "grouping_off_ratio": round(off_ratio, 3),
                "commands_per_transaction": round(mean_group, 2),
                "p50_ms": round(pct(results["on"].latencies, 0.5), 2),
                "p99_ms": round(pct(results["on"].latencies, 0.99), 2),
                "grouping_off_p99_ms": round(pct(results["off"].latencies, 0.99), 2),
                "one_client_on": round(results["on_1"].median, 1),
                "one_client_off": round(results["off_1"].median, 1),
                "raw_p99_ms": round(pct(results["raw"].latencies, 0.99), 2),
            },
        }
        print(json.dumps({"bench": Path(__file__).stem, "load": load, "rows": [row_out]}))


if __name__ == "__main__":
    main()
