"""Console page render times: every page, server time (the request through the whole app,
in-process), p50 and max of a few renders, with the 300-invoice demo tenant and with a tenant of
100,000 invoices. Goals: under 300 ms and under 1 s.

    .venv/bin/python benchmarks/console_bench.py [--invoices 100000] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from random import Random

import psycopg
from fastapi.testclient import TestClient

from api.http.app import create_app
from application.demo.scenario import DEMO_NAME, DEMO_TENANT, load_demo, make_draft
from domain.base import Provenance, Source
from domain.calendar import SHANGHAI
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate

PG = "postgresql://root@127.0.0.1:5432/postgres"
PAGES = [
    "/console",
    "/console/invoices",
    "/console/invoices?status=missing",
    "/console/invoices?issued_from={first}&issued_to={last}&min_total=1000",
    "/console/invoices?as_of={as_of}",
    "/console/invoices/{key}",
    "/console/invoices/{key}?as_of={as_of}",
    "/console/queues/missing",
    "/console/queues/rejected",
    "/console/queues/overdue",
    "/console/queues/mismatched",
    "/console/reentry",
    "/console/complaints",
    "/console/lost",
    "/console/reconciliations",
    "/console/evidence",
    "/console/admin/policy",
    "/console/admin/webhooks",
    "/console/admin/keys",
    "/console/access-log",
]


def settings_for(store: str, folder: Path, name: str) -> Settings:
    if store == "postgres":
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        url = PG.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{folder / name}.db"
    settings = Settings(database_url=url, data_dir=folder, environment="test")
    migrate.upgrade(settings)
    return settings


def bulk(services: Services, tenant: str, count: int) -> None:
    """`count` invoices issued in batches of 1,000, their issue dates spread over two years."""
    rng = Random(7)  # noqa: S311 - benchmark data
    buyers = [(f"买方{i}有限公司", "91330100716105852F") for i in range(1)]
    today = services.ledger.today()
    for start in range(0, count, 1000):
        drafts = []
        for i in range(start, min(start + 1000, count)):
            day = today - timedelta(days=i % 700)
            drafts.append(make_draft(rng, buyers, DEMO_NAME, tenant, day, f"{26:02d}11299{i:013d}"))
        at = datetime.combine(today, clock_time(9), SHANGHAI)
        services.ledger.issue_invoices(tenant, drafts, Provenance("bench", Source.DEMO, at))
    for name in ("invoice_status", "status_history", "streams", "ack_timers", "cases", "seal"):
        services.bring_up_to_date(name, 3600)


def measure(client: TestClient, path: str, runs: int) -> tuple[float, float, int]:
    times, status = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return statistics.median(times), max(times), status


def run(label: str, services: Services, goal_ms: float, runs: int) -> bool:
    key = services.keys.create_key(DEMO_TENANT, "clerk,reviewer,approver,auditor,admin", "")[1]
    ok = True
    with TestClient(create_app(services=services)) as client:
        form = client.get("/console/sign-in").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        client.post("/console/sign-in", data={"api_key": key, "csrf": csrf.group(1)})
        rows, _ = services.reader.list(DEMO_TENANT, _filter(), 1, None)
        today = services.ledger.today()
        first = today - timedelta(days=60)
        values = {
            "key": rows[0]["invoice_key"],
            "first": first.isoformat(),
            "last": today.isoformat(),
            "as_of": (datetime.now(SHANGHAI) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        }
        print(f"\n{label}: goal {goal_ms:.0f} ms per page (p50 of {runs})")
        print(f"{'page':<72} {'p50 ms':>8} {'max ms':>8}  status")
        for template in PAGES:
            path = template.format(**values)
            p50, worst, status = measure(client, path, runs)
            mark = "" if p50 < goal_ms and status == 200 else "  <-- over"
            ok = ok and p50 < goal_ms and status == 200
            print(f"{path[:72]:<72} {p50:8.1f} {worst:8.1f}  {status}{mark}")
    return ok


def _filter():  # type: ignore[no-untyped-def]
    from application.ports import InvoiceFilter

    return InvoiceFilter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fapiao-console-bench-") as tmp:
        folder = Path(tmp)
        small = build_services(settings_for(args.store, folder, "console_bench_demo"))
        small.keys.ensure_tenant(DEMO_TENANT, DEMO_NAME)
        load_demo(small.ledger, DEMO_TENANT)
        for name in ("invoice_status", "status_history", "streams", "ack_timers", "cases", "seal"):
            small.bring_up_to_date(name, 600)
        demo_ok = run("300-invoice demo tenant", small, 300, args.runs)
        small.close()

        big = build_services(settings_for(args.store, folder, "console_bench_big"))
        big.keys.ensure_tenant(DEMO_TENANT, DEMO_NAME)
        started = time.perf_counter()
        bulk(big, DEMO_TENANT, args.invoices)
        print(f"\n(loaded {args.invoices:,} invoices in {time.perf_counter() - started:.0f} s)")
        big_ok = run(f"{args.invoices:,} invoices", big, 1000, args.runs)
        big.close()
    print(f"\nall pages within goal: demo {demo_ok}, {args.invoices:,} invoices {big_ok}")


if __name__ == "__main__":
    main()
