"""Evidence benchmark on PostgreSQL: sealing rate vs the plain status projection's rate (goal:
within 2x), export time of one invoice's bundle (p50) and of a 10,000-invoice bundle, and the
time to verify each offline.

The seal is append-only and never rebuilt, so it is measured once, on its first catch-up over
the whole log (leaves, stream heads, checkpoints proven and signed every 1000 events); the
status projection is measured twice from empty (median).
Usage: python benchmarks/evidence_bench.py [--invoices 10000] [--admin-url ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from application.invoices.lifecycle import AcknowledgeRequest, SubmitRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.base import Provenance, Source  # noqa: E402
from domain.invoices.issuance import InvoiceDraft, PartyDraft  # noqa: E402
from infrastructure.bootstrap import build_services, event_catalog  # noqa: E402
from infrastructure.evidence.bundle import ExportRequest, export_bundle  # noqa: E402
from infrastructure.evidence.bundle_verifier import read_key_file, verify_bundle  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from infrastructure.store import migrate  # noqa: E402

TENANT = "91110108769914581E"


def draft(n: int) -> InvoiceDraft:
    return InvoiceDraft(
        number=f"26112{n:015d}",
        invoice_type="digital_ordinary",
        issued_on=date(2026, 11, 2),
        seller=PartyDraft("北京云帆", TENANT),
        buyer=PartyDraft("杭州青禾", "91330100716105852F"),
        amount="1000.00",
        tax="60.00",
        total="1060.00",
        tax_rate="0.06",
    )


def rate(worker: object, reset: bool = True) -> float:
    if reset:
        worker.reset()  # type: ignore[attr-defined]
    t = time.perf_counter()
    n = worker.catch_up()  # type: ignore[attr-defined]
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    name = f"fapiao_evidence_bench_{uuid.uuid4().hex[:8]}"
    url = f"{args.admin_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="fapiao-evidence-bench-"))
    try:
        settings = Settings(database_url=url, data_dir=tmp)
        migrate.upgrade(settings)
        services = build_services(settings)
        by = Provenance("bench", Source.CLI, datetime(2026, 11, 3, tzinfo=UTC))
        ids = []
        for start in range(0, args.invoices, 1000):
            ids += [
                r.invoice_id
                for r in services.ledger.issue_invoices(
                    TENANT, [draft(n) for n in range(start, min(start + 1000, args.invoices))], by
                )
            ]
        for i in ids[: len(ids) // 2]:
            services.ledger.change_invoice(TENANT, i, SubmitRequest(channel="erp"), by)
            services.ledger.change_invoice(
                TENANT, i, AcknowledgeRequest(platform_ref="SW", learned_via="poll"), by
            )
        for name, worker in services.workers.items():
            if name != "seal":
                worker.catch_up()
        events = services.workers["seal"].head()
        print(f"evidence benchmark on PostgreSQL: {len(ids):,} invoices, {events:,} events")
        status = [rate(services.workers["invoice_status"]) for _ in range(2)]
        s_seal = rate(services.workers["seal"], reset=False)
        s_status = statistics.median(status)
        print(f"  status projection catch-up   {s_status:>9,.0f} events/s")
        print(
            f"  sealing (leaves + checkpoints every {settings.checkpoint_every})"
            f" {s_seal:>9,.0f} events/s"
        )
        print(
            f"  ratio seal/status: {s_seal / s_status:.2f} (goal >= 0.50, within 2x) "
            f"{'PASS' if s_seal >= s_status / 2 else 'FAIL'}"
        )
        keys = read_key_file("\n".join(k.vkey for k in services.merkle.signer.public_keys()))
        catalog = event_catalog()

        def request(invoices: list[uuid.UUID]) -> ExportRequest:
            return ExportRequest(TENANT, invoices, by=by)

        one, check_one = [], []
        for i, invoice_id in enumerate(ids[:9]):
            out = tmp / f"one-{i}.zip"
            t = time.perf_counter()
            export_bundle(services, request([invoice_id]), out)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            failures = verify_bundle(out, catalog, keys).failures
            check_one.append(time.perf_counter() - t)
            assert not failures, failures[:3]
        p50_export, p50_verify = statistics.median(one), statistics.median(check_one)
        print(
            f"  one invoice's bundle: export p50 {p50_export * 1000:.0f} ms, "
            f"verify p50 {p50_verify * 1000:.0f} ms (goal < 200 ms each) "
            f"{'PASS' if max(p50_export, p50_verify) < 0.2 else 'FAIL'}"
        )
        out = tmp / "all.zip"
        t = time.perf_counter()
        report = export_bundle(services, request(ids), out)
        export_all = time.perf_counter() - t
        t = time.perf_counter()
        result = verify_bundle(out, catalog, keys)
        verify_all = time.perf_counter() - t
        assert not result.failures, result.failures[:3]
        print(
            f"  {report.invoices:,}-invoice bundle ({report.events:,} events, "
            f"{out.stat().st_size / 1e6:.1f} MB): export {export_all:.1f} s, "
            f"verify {verify_all:.1f} s"
        )
        services.close()
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
