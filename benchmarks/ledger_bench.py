"""Ledger-core benchmark on PostgreSQL, each figure beside the library baseline it is judged by.

  (a) single-command rate through the application vs the library's bare save()
  (b) batched issuance (100 invoices per save) vs the library's batched save
  (c) projection catch-up: our worker vs the library's ProjectionRunner over the same events
  (d) p50/p99 of GET /v1/invoices/{id} under concurrent load vs a raw primary-key SELECT

Creates and drops its own database. Goals (issue 2): (c) >= 5x, (a) >= 0.8.
Usage: python benchmarks/ledger_bench.py [--quick] [--admin-url postgresql://root@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg

from application.invoices.lifecycle import AcknowledgeRequest, SubmitRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventsourcing.dispatch import singledispatchmethod  # noqa: E402
from eventsourcing.persistence import Tracking  # noqa: E402
from eventsourcing.postgres import PostgresTrackingRecorder  # noqa: E402
from eventsourcing.projection import Projection, ProjectionRunner  # noqa: E402

from application.invoices.ledger import InvoiceLedger  # noqa: E402
from application.invoices.status_view import fold  # noqa: E402
from domain.base import Provenance, Source  # noqa: E402
from domain.invoices.invoice import Invoice  # noqa: E402
from domain.invoices.issuance import InvoiceDraft, LineDraft, PartyDraft, validate_draft  # noqa: E402
from infrastructure.bootstrap import build_services  # noqa: E402
from infrastructure.clock import SystemClock  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402

TENANT = "91110108769914581E"
_serial = iter(range(1, 10**9))


def draft() -> InvoiceDraft:
    n = next(_serial)
    return InvoiceDraft(
        number=f"26112{n:015d}",
        invoice_type="digital_special",
        issued_on=date(2026, 11, 18),
        seller=PartyDraft("北京云帆科技有限公司", TENANT),
        buyer=PartyDraft("杭州青禾贸易有限公司", "91330100716105852F"),
        amount="1000.00",
        tax="130.00",
        total="1130.00",
        lines=(
            LineDraft(
                "*信息技术服务*软件维护",
                "1000.00",
                "130.00",
                "0.13",
                quantity="10",
                unit_price="100",
            ),
        ),
    )


def by() -> Provenance:
    return Provenance("bench", Source.CLI, datetime.now(UTC))


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def interleaved(reps: int, runs: dict[str, Any]) -> dict[str, list[float]]:
    """Run each configuration once per rep, alternating, so drift hits all alike."""
    out: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            out[name].append(fn())
    return out


def line(label: str, figures: list[float], unit: str) -> float:
    med = statistics.median(figures)
    print(f"  {label:<44} {med:>10,.0f} {unit}  (min {min(figures):,.0f}, max {max(figures):,.0f})")
    return med


# ---- (c) the library's runner, writing the same table through the same fold ----------------


class LibraryStatusView(PostgresTrackingRecorder):
    """What the library's projection docs suggest: one transaction per event."""

    def apply(self, event: Any, tracking: Tracking) -> None:
        from psycopg.rows import dict_row

        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            curs.execute(
                "SELECT * FROM invoice_status WHERE invoice_id = %s", (event.originator_id,)
            )
            curs.row_factory = dict_row  # type: ignore[assignment]
            current = curs.fetchone()
            row = fold(dict(current) if current else None, event, tracking.notification_id)
            cols = list(row)
            curs.execute(
                f"INSERT INTO invoice_status ({', '.join(cols)}) VALUES "  # noqa: S608
                f"({', '.join(['%s'] * len(cols))}) ON CONFLICT (invoice_id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "invoice_id"),
                [row[c] for c in cols],
            )

    def track(self, tracking: Tracking) -> None:
        self.insert_tracking(tracking)


class LibraryStatusProjection(Projection[LibraryStatusView]):
    name = "invoice_status"

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Invoice.Event):
            self.view.apply(event, tracking)
        else:
            self.view.track(tracking)


class BenchLedger(InvoiceLedger):
    name = "Ledger"

    def __init__(self, env: Any = None) -> None:
        super().__init__(dict(env or {}), SystemClock())


# ---- (d) HTTP load ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_load(port: int, key: str, ids: list[str], threads: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        rng = random.Random()  # noqa: S311
        while time.monotonic() < deadline:
            start = time.perf_counter()
            conn.request(
                "GET", f"/v1/invoices/{rng.choice(ids)}", headers={"Authorization": f"Bearer {key}"}
            )
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    single_n, batch_n, reps = (200, 2000, 3) if args.quick else (1000, 10000, 3)
    load_seconds = 3 if args.quick else 10

    name = f"fapiao_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = f"{base}/{name}"
    settings = Settings(database_url=url, pool_size=4, max_overflow=8)
    started = time.monotonic()
    try:
        migrate.upgrade(settings)
        services = build_services(settings)
        ledger = services.ledger
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        bare = BenchLedger(settings.eventsourcing_env())
        today = ledger.today()
        print(
            f"fapiao-ledger benchmark on PostgreSQL ({'quick' if args.quick else 'full'}), "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
        )

        # (a) single commands
        def ours_single() -> float:
            drafts = [draft() for _ in range(single_n)]
            t = time.perf_counter()
            for d in drafts:
                ledger.issue_invoice(TENANT, d, by())
            return rate(single_n, time.perf_counter() - t)

        def bare_single() -> float:
            facts = [validate_draft(draft(), today)[0] for _ in range(single_n)]
            t = time.perf_counter()
            for f in facts:
                bare.save(Invoice.issue(TENANT, f, by()))
            return rate(single_n, time.perf_counter() - t)

        print(f"\n(a) single-command issue, {single_n} per run, {reps} runs interleaved")
        a = interleaved(reps, {"bare": bare_single, "ours": ours_single})
        a_bare = line("library bare save() (pre-validated)", a["bare"], "invoices/s")
        a_ours = line("application issue_invoice (validate+save)", a["ours"], "invoices/s")
        print(f"  ratio ours/bare: {a_ours / a_bare:.2f}  (goal >= 0.80)")

        # (b) batched issuance
        def ours_batch() -> float:
            batches = [[draft() for _ in range(100)] for _ in range(batch_n // 100)]
            t = time.perf_counter()
            for b in batches:
                ledger.issue_invoices(TENANT, b, by())
            return rate(batch_n, time.perf_counter() - t)

        def bare_batch() -> float:
            batches = [
                [validate_draft(draft(), today)[0] for _ in range(100)]
                for _ in range(batch_n // 100)
            ]
            t = time.perf_counter()
            for b in batches:
                bare.save(*(Invoice.issue(TENANT, f, by()) for f in b))
            return rate(batch_n, time.perf_counter() - t)

        print(f"\n(b) batched issue, 100 invoices per save, {batch_n} per run, {reps} runs")
        b = interleaved(reps, {"bare": bare_batch, "ours": ours_batch})
        b_bare = line("library save(*100 aggregates)", b["bare"], "invoices/s")
        b_ours = line("application issue_invoices(100)", b["ours"], "invoices/s")
        print(f"  ratio ours/bare: {b_ours / b_bare:.2f}")

        # lifecycle events so the projection has more than creations to fold
        ids = [
            r.invoice_id for r in ledger.issue_invoices(TENANT, [draft() for _ in range(500)], by())
        ]
        for i in ids:
            ledger.change_invoice(TENANT, i, SubmitRequest(channel="erp"), by())
            ledger.change_invoice(
                TENANT, i, AcknowledgeRequest(platform_ref="ACK", learned_via="poll"), by()
            )
        head = int(ledger.recorder.max_notification_id() or 0)
        worker = services.worker("invoice_status")

        def ours_catch_up() -> float:
            worker.reset()
            t = time.perf_counter()
            n = worker.catch_up()
            elapsed = time.perf_counter() - t
            assert worker.position() == head, (worker.position(), head)
            return rate(n, elapsed)

        def library_catch_up() -> float:
            worker.reset()
            env = {**settings.eventsourcing_env(), "POSTGRES_POOL_SIZE": "2"}
            t = time.perf_counter()
            with ProjectionRunner(
                application_class=BenchLedger,
                projection_class=LibraryStatusProjection,
                view_class=LibraryStatusView,
                env=env,
            ) as runner:
                runner.wait(head, timeout=900)
                elapsed = time.perf_counter() - t
            assert worker.position() == head
            return rate(head, elapsed)

        events = head
        print(
            f"\n(c) projection catch-up of invoice_status over {events:,} events, "
            f"{2 if not args.quick else 1} runs each"
        )
        c = interleaved(
            2 if not args.quick else 1, {"library": library_catch_up, "ours": ours_catch_up}
        )
        c_lib = line("library ProjectionRunner (1 txn per event)", c["library"], "events/s")
        c_ours = line(f"our worker (batches of {worker.batch_size})", c["ours"], "events/s")
        print(f"  ratio ours/library: {c_ours / c_lib:.1f}x  (goal >= 5x)")

        # (d) GET under load
        _, key = services.keys.create_key(TENANT, "auditor", "bench")
        sample = [str(i) for i in random.sample(ids, 200)]
        port = free_port()
        env = {**os.environ, "FAPIAO_DATABASE_URL": url}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.http.app:create_app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            for _ in range(100):
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).request(
                        "GET", "/healthz"
                    )
                    break
                except OSError:
                    time.sleep(0.1)
            http_load(port, key, sample, 4, 1)  # warm-up
            lat = http_load(port, key, sample, 16, load_seconds)
        finally:
            server.terminate()
            server.wait(10)
        raw: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            for i in sample * 5:
                t = time.perf_counter()
                conn.execute(
                    "SELECT * FROM invoice_status WHERE invoice_id = %s", (i,), prepare=True
                ).fetchone()
                raw.append(time.perf_counter() - t)
        print(
            f"\n(d) GET /v1/invoices/{{id}}: 16 client threads for {load_seconds} s on "
            "loopback (client shares the 2 cores)"
        )
        print(f"  requests {len(lat):,}  ({len(lat) / load_seconds:,.0f} req/s)")
        print(f"  HTTP p50 {pct(lat, 0.50):.2f} ms  p99 {pct(lat, 0.99):.2f} ms")
        print(
            f"  raw PK SELECT (1 connection) p50 {pct(raw, 0.50):.3f} ms  "
            f"p99 {pct(raw, 0.99):.3f} ms"
        )
        print(
            f"  ratio HTTP/raw: p50 {pct(lat, 0.5) / pct(raw, 0.5):.0f}x, "
            f"p99 {pct(lat, 0.99) / pct(raw, 0.99):.0f}x"
        )

        print(
            f"\nsummary: (a) {a_ours / a_bare:.2f} of bare save [goal 0.80] "
            f"{'PASS' if a_ours / a_bare >= 0.8 else 'FAIL'}; "
            f"(c) {c_ours / c_lib:.1f}x the library runner [goal 5x] "
            f"{'PASS' if c_ours / c_lib >= 5 else 'FAIL'}; "
            f"total {time.monotonic() - started:.0f} s"
        )
        bare.close()
        services.close()
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
