"""Evidence benchmark on PostgreSQL: sealing rate vs the plain status projection's rate (goal:
within 2x), export time of one invoice's bundle (p50) and of a 10,000-invoice bundle, and the
time to verify each offline; then the sealing rate with and without signing, timestamping
and cosigning (goal: the anchors cost at most 10%).

Anchors: the same log is copied (PostgreSQL template databases) and sealed twice per round,
alternating: once signing a single checkpoint (the first batch) and nothing else, once signing
a checkpoint every 1000 events, and once signing every 1000 events while a real TSA (OpenSSL's
`openssl ts -reply`, as in the tests) timestamps each and two `fapiao witness serve` processes
cosign the latest (TSA and witnesses in their own processes at nice 10: other parties'
machines, sharing this one's cores), the anchors
fetched by their own thread as in `fapiao serve` (every FAPIAO_ANCHOR_POLL_SECONDS, default 2 s,
waiting while the sealer is more than FAPIAO_ANCHOR_YIELD_EVENTS behind, default 5000; set
them in the environment to try others). Three rounds; medians compared. The time to
have every anchor in after sealing ends is printed too.

The seal is append-only and never rebuilt, so it is measured once, on its first catch-up over
the whole log (leaves, stream heads, checkpoints proven and signed every 1000 events); the
status projection is measured twice from empty (median).
The large bundles are exported and verified at a fifth, a half and all of the invoices
(2,000, 5,000 and 10,000 by default), each with the resident memory it added at its peak:
memory that stays flat does not grow with the bundle. Each of these exports and verifies runs
in a fresh process of its own (this script with --step), which reports its time and the peak
it added: measured in one process, memory an earlier step freed is reused and hides growth.
Wall and CPU seconds are printed (on a shared machine the CPU seconds move less), with the
machine's load. Verify runs as `fapiao evidence verify` does: the invoice streams of a bundle
of 1,000 invoices or more are checked by as many processes as CPUs (at most 8), the
verifier's own and forked workers; the workers' CPU seconds and the memory each holds
privately (smaps_rollup) are counted in.

Usage: python benchmarks/evidence_bench.py [--invoices 10000] [--admin-url ...] [--anchors-only]
       [--quick] [--json] [--exports-only]
--quick: 2,000 invoices, no anchors round (under a minute); --json: the last line of stdout is
one JSON object (the benchmarks' contract): rows "evidence bundle export, 10k invoices" and
"evidence bundle verify, 10k invoices" (seconds at --invoices; goals < 10 s and < 5 s, and
memory flat: the peak at all the invoices within 1.5x the peak at a fifth, + 10 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text as sql_text

from application.invoices.lifecycle import AcknowledgeRequest, SubmitRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.base import Provenance, Source  # noqa: E402
from domain.invoices.issuance import InvoiceDraft, PartyDraft  # noqa: E402
from infrastructure.bootstrap import build_services, event_catalog  # noqa: E402
from infrastructure.evidence.bundle import ExportRequest, export_bundle  # noqa: E402
from infrastructure.evidence.bundle_verifier import (  # noqa: E402
    default_workers,
    read_key_file,
    verify_bundle,
)
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


def _high_water() -> int | None:
    """The kernel's peak resident size of this process (VmHWM, bytes), if it tells."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _children_private() -> int:
    """Bytes the children of this process hold privately (Private_Clean + Private_Dirty of
    each one's smaps_rollup); 0 where Linux does not tell."""
    total = 0
    for task in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for pid in task.read_text().split():
                with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith(("Private_Clean:", "Private_Dirty:")):
                            total += int(line.split()[1]) * 1024
    return total


@contextlib.contextmanager
def peak_rss() -> Iterator[list[float]]:
    """Peak resident memory (MB) above the start: sampled every 20 ms while the block runs,
    and the kernel's high-water mark, reset at the start where Linux allows it. The memory of
    child processes (the verifier's forked workers) is counted in: what each holds that it
    does not share with this process (its private pages; the rest is this one's, counted)."""
    page = os.sysconf("SC_PAGE_SIZE")

    children = [0, 0.0]  # their private bytes when last read, and when that was

    def rss() -> int:
        # smaps_rollup walks a process's pages (milliseconds): the children are read every
        # quarter second (what they hold only grows until they end), this one every sample.
        if time.monotonic() - children[1] >= 0.25:
            children[:] = [_children_private(), time.monotonic()]
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page + int(children[0])

    reset = False
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := the current resident size
        reset = True
    start, peak, done = rss(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], (rss() - start) / 1e6)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], (rss() - start) / 1e6)
        high = _high_water() if reset else None
        if high is not None:
            peak[0] = max(peak[0], (high - start) / 1e6)


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
    parser.add_argument("--anchors-only", action="store_true", help="only the anchors' overhead")
    parser.add_argument("--quick", action="store_true", help="2,000 invoices, no anchors round")
    parser.add_argument("--json", action="store_true", help="a JSON summary as the last line")
    parser.add_argument("--exports-only", action="store_true", help="no anchors round")
    parser.add_argument("--step", choices=("export", "verify"), help=argparse.SUPPRESS)
    parser.add_argument("--step-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, json.loads(args.step_args))))
        return
    if args.quick and args.invoices == parser.get_default("invoices"):
        args.invoices = 2_000
    load = os.getloadavg()[0]
    print(f"load (1 min) at start: {load:.2f} on {os.cpu_count()} cores")
    rows: list[dict[str, object]] = []
    if not args.anchors_only:
        rows += exports(args)
    if args.anchors_only or not (args.quick or args.exports_only):
        anchor_overhead(args)
    if args.json:
        print(json.dumps({"bench": "evidence_bench", "load": load, "rows": rows}))


def issue_all(services: object, invoices: int) -> list[uuid.UUID]:
    by = Provenance("bench", Source.CLI, datetime(2026, 11, 3, tzinfo=UTC))
    ledger = services.ledger  # type: ignore[attr-defined]
    ids: list[uuid.UUID] = []
    for start in range(0, invoices, 1000):
        ids += [
            r.invoice_id
            for r in ledger.issue_invoices(
                TENANT, [draft(n) for n in range(start, min(start + 1000, invoices))], by
            )
        ]
    for i in ids[: len(ids) // 2]:
        ledger.change_invoice(TENANT, i, SubmitRequest(channel="erp"), by)
        ledger.change_invoice(
            TENANT, i, AcknowledgeRequest(platform_ref="SW", learned_via="poll"), by
        )
    return ids


@contextlib.contextmanager
def tsa_process(folder: Path) -> Iterator[tuple[str, Path]]:
    """tests/local_tsa.py as its own process (nice 10); (its URL, its CA file)."""
    import socket
    import subprocess

    from tests.witness_procs import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.local_tsa", str(folder), str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: os.nice(10),  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the TSA process did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/tsa", folder / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def anchor_overhead(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pydantic import SecretStr

    from domain.evidence.checkpoint import verifier_key
    from infrastructure.evidence.cosigning import raw_public
    from tests.witness_procs import witness_process

    prefix = args.admin_url.rsplit("/", 1)[0]
    base = f"fapiao_anchor_bench_{uuid.uuid4().hex[:8]}"
    modes = ("plain", "signed", "anchored") * 3
    copies = [f"{base}_{i}" for i in range(len(modes))]
    tmp = Path(tempfile.mkdtemp(prefix="fapiao-anchor-bench-"))
    seed = "11" * 32
    quiet = {"checkpoint_every": 10**9, "checkpoint_minutes": 10.0**6}
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{base}"')  # type: ignore[arg-type]
    try:
        settings = Settings(
            database_url=f"{prefix}/{base}",
            data_dir=tmp / "base",
            signing_key=SecretStr(seed),
            **quiet,
        )
        migrate.upgrade(settings)
        services = build_services(settings)
        issue_all(services, args.invoices)
        origin = services.merkle.signer.origin
        services.close()
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            for copy in copies:
                c.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{base}"')  # type: ignore[arg-type]
        log_vkey = verifier_key(
            f"{origin}/env", raw_public(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)))
        )
        plain, signed, anchored, settle = [], [], [], []
        events = 0
        for i, (copy, mode) in enumerate(zip(copies, modes, strict=True)):
            with_anchors = mode == "anchored"
            rnd = i // 3 + 1
            folder = tmp / copy
            with contextlib.ExitStack() as stack:
                update: dict[str, object] = (
                    dict(quiet) if mode == "plain" else {"checkpoint_every": 1000}
                )
                if with_anchors:
                    # The TSA and the witnesses stand for other parties' machines: their own
                    # processes, at a lower CPU priority, so they do not take the cores the
                    # measured sealer needs (here they share this machine's).
                    tsa_url, tsa_ca = stack.enter_context(tsa_process(folder / "tsa"))
                    witnesses = [
                        stack.enter_context(
                            witness_process(
                                folder / f"w{n}",
                                f"bench{n}.example/w",
                                origin,
                                [log_vkey],
                                nice=10,
                            )
                        )
                        for n in (1, 2)
                    ]
                    update = {
                        "checkpoint_every": 1000,
                        "tsa_urls": tsa_url,
                        "tsa_ca_file": tsa_ca,
                        "witnesses": {w.url: w.vkey for w in witnesses},
                        "outbound_allow": "127.0.0.1/32",
                        "anchor_backoff_seconds": 0.2,
                    }
                services = build_services(
                    Settings(
                        database_url=f"{prefix}/{copy}",
                        data_dir=folder,
                        signing_key=SecretStr(seed),
                    ).model_copy(update=update)
                )
                stack.callback(services.close)
                stop = threading.Event()

                cpu: list[float] = []

                poll = services.settings.anchor_poll_seconds

                def anchor_loop(
                    svc: object = services,
                    stop: threading.Event = stop,
                    cpu: list[float] = cpu,
                    poll: float = poll,
                ) -> None:
                    while not stop.wait(poll):  # as Services._anchor_forever
                        t0 = time.thread_time()
                        svc.anchor_round()  # type: ignore[attr-defined]
                        cpu.append(time.thread_time() - t0)

                thread = threading.Thread(target=anchor_loop, daemon=True)
                if with_anchors:
                    thread.start()
                events = services.workers["seal"].head()
                t_seal = time.perf_counter()
                seal_rate = rate(services.workers["seal"], reset=False)
                t_seal = time.perf_counter() - t_seal
                rounds_during = len(cpu)
                cpu_during = sum(cpu)
                if with_anchors:
                    t = time.perf_counter()
                    while time.perf_counter() - t < 300:
                        status = services.anchors.status()
                        if not status.tokens_outstanding and not status.cosignatures_outstanding:
                            break
                        time.sleep(0.05)
                    settle.append(time.perf_counter() - t)
                    with services.engine.connect() as conn:
                        counts = [
                            conn.execute(sql_text(f"SELECT count(*) FROM {table}")).scalar_one()
                            for table in (
                                "checkpoints",
                                "checkpoint_timestamps",
                                "checkpoint_cosignatures",
                            )
                        ]
                    anchored.append(seal_rate)
                    print(
                        f"  round {rnd}: signed+timestamped+cosigned {seal_rate:>9,.0f} "
                        f"events/s ({counts[0]} checkpoints, {counts[1]} tokens, {counts[2]} "
                        f"cosignatures; every anchor in {settle[-1]:.1f} s after sealing ended; "
                        f"anchor thread CPU while sealing {cpu_during:.2f} s in {rounds_during} "
                        f"rounds, sealing took {t_seal:.2f} s)"
                    )
                elif mode == "signed":
                    signed.append(seal_rate)
                    print(f"  round {rnd}: signed every 1000 events {seal_rate:>9,.0f} events/s")
                else:
                    plain.append(seal_rate)
                    print(f"  round {rnd}: sealing, one checkpoint   {seal_rate:>9,.0f} events/s")
                stop.set()
                if thread.is_alive():
                    thread.join(timeout=30)
        p, a = statistics.median(plain), statistics.median(anchored)
        sg = statistics.median(signed)
        overhead = (p - a) / p
        print(
            f"anchors on {events:,} events (median of {len(plain)} rounds each; anchors polled "
            f"every {Settings().anchor_poll_seconds} s, waiting while the sealer is more than "
            f"{Settings().anchor_yield_events} events behind):"
        )
        print(f"  sealing without signing+timestamping+cosigning {p:>9,.0f} events/s")
        print(f"  sealing with    signing only (every 1000)      {sg:>9,.0f} events/s")
        print(f"  sealing with    signing+timestamping+cosigning {a:>9,.0f} events/s")
        print(
            f"  overhead {overhead * 100:.1f}% (goal <= 10%) "
            f"{'PASS' if overhead <= 0.10 else 'FAIL'}"
        )
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            for db in [*copies, base]:
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]


def exports(args: argparse.Namespace) -> list[dict[str, object]]:
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
        for worker_name, worker in services.workers.items():
            if worker_name != "seal":
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
        # A fifth and a half of the invoices first, then all: memory that stays flat does not
        # grow with them.
        sizes: list[dict[str, float]] = []
        (tmp / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
        (tmp / "keys.txt").write_text(
            "\n".join(k.vkey for k in services.merkle.signer.public_keys())
        )
        for count in (max(1, len(ids) // 5), max(1, len(ids) // 2), len(ids)):
            out = tmp / f"all-{count}.zip"
            load = os.getloadavg()[0]
            given = {"url": url, "data_dir": str(tmp), "invoices": count, "out": str(out)}
            exported = in_fresh_process("export", given)
            verified = in_fresh_process("verify", given)
            assert not verified["failures"], verified["failures"]
            export_mb, verify_mb = exported["rss_mb"], verified["rss_mb"]
            export_all, export_cpu = exported["s"], exported["cpu_s"]
            verify_all, verify_cpu = verified["s"], verified["cpu_s"]
            sizes.append(
                {
                    "invoices": exported["invoices"],
                    "events": exported["events"],
                    "bundle_mb": round(out.stat().st_size / 1e6, 1),
                    "export_s": round(export_all, 2),
                    "export_cpu_s": round(export_cpu, 2),
                    "export_rss_mb": round(export_mb, 1),
                    "verify_s": round(verify_all, 2),
                    "verify_cpu_s": round(verify_cpu, 2),
                    "verify_rss_mb": round(verify_mb, 1),
                    "verify_workers": verified["workers"],
                    "load": round(load, 2),
                }
            )
            print(
                f"  {exported['invoices']:,}-invoice bundle ({exported['events']:,} events, "
                f"{out.stat().st_size / 1e6:.1f} MB, load {load:.1f}): export {export_all:.1f} s "
                f"(CPU {export_cpu:.1f} s, +{export_mb:.0f} MB resident), verify "
                f"{verify_all:.1f} s (CPU {verify_cpu:.1f} s, +{verify_mb:.0f} MB, "
                f"{verified['workers']} process(es) checking streams; workers' CPU and private "
                "memory counted in) (each in a fresh process)"
            )
            out.unlink()
        full = sizes[-1]

        def flat(key: str) -> tuple[bool, float]:
            # Flat: the peak at all the invoices within 1.5x the peak at a fifth, + 10 MB.
            limit = 1.5 * sizes[0][key] + 10
            return full[key] <= limit, limit

        export_flat, export_limit = flat("export_rss_mb")
        verify_flat, verify_limit = flat("verify_rss_mb")
        print(
            f"  goal at 10,000: export < 10 s ({full['export_s']:.1f}), verify < 5 s "
            f"({full['verify_s']:.1f}), memory flat (export "
            + " / ".join(f"{r['export_rss_mb']:.0f}" for r in sizes)
            + " MB, verify "
            + " / ".join(f"{r['verify_rss_mb']:.0f}" for r in sizes)
            + " MB at "
            + " / ".join(f"{r['invoices']:,}" for r in sizes)
            + " invoices)"
        )
        print(
            "  memory flat (the peak at all the invoices <= 1.5x the peak at a fifth + 10 MB): "
            f"export {full['export_rss_mb']:.0f} <= {export_limit:.0f} "
            f"{'PASS' if export_flat else 'FAIL'}, verify {full['verify_rss_mb']:.0f} <= "
            f"{verify_limit:.0f} {'PASS' if verify_flat else 'FAIL'}"
        )
        common = {
            "invoices": full["invoices"],
            "events": full["events"],
            "bundle_mb": full["bundle_mb"],
            "sizes": sizes,
            "one_invoice_export_p50_ms": round(p50_export * 1000, 1),
            "one_invoice_verify_p50_ms": round(p50_verify * 1000, 1),
            "seal_events_per_s": round(s_seal),
            "status_projection_events_per_s": round(s_status),
        }
        rows = [
            {
                "path": "evidence bundle export, 10k invoices",
                "ours": full["export_s"],
                "unit": "s",
                "reference": None,
                "reference_label": "-",
                "ratio": None,
                "goal": "< 10 s, memory flat",
                "pass": full["export_s"] < 10 and export_flat,
                "extra": {
                    "cpu_s": full["export_cpu_s"],
                    "peak_rss_mb": full["export_rss_mb"],
                    "memory_flat": export_flat,
                    "flat_limit_mb": round(export_limit, 1),
                    "rss_mb_by_invoices": {str(r["invoices"]): r["export_rss_mb"] for r in sizes},
                    **common,
                },
            },
            {
                "path": "evidence bundle verify, 10k invoices",
                "ours": full["verify_s"],
                "unit": "s",
                "reference": None,
                "reference_label": "-",
                "ratio": None,
                "goal": "< 5 s, memory flat",
                "pass": full["verify_s"] < 5 and verify_flat,
                "extra": {
                    "cpu_s": full["verify_cpu_s"],
                    "workers": full["verify_workers"],
                    "peak_rss_mb": full["verify_rss_mb"],
                    "memory_flat": verify_flat,
                    "flat_limit_mb": round(verify_limit, 1),
                    "rss_mb_by_invoices": {str(r["invoices"]): r["verify_rss_mb"] for r in sizes},
                },
            },
        ]
        services.close()
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    return rows


def in_fresh_process(name: str, given: dict[str, object]) -> dict[str, Any]:
    """One step (`step`) run by this script in a process of its own; what it reports."""
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--step", name, "--step-args", json.dumps(given)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {name} step failed:\n{done.stderr[-4000:]}")
    reported: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return reported


def step(name: str, given: dict[str, Any]) -> dict[str, object]:
    """Export (or verify) the bundle of the first `invoices` invoices, measured alone: its
    wall and CPU seconds and the resident memory it added at its peak."""
    out = Path(given["out"])
    data_dir = Path(given["data_dir"])
    if name == "verify":
        keys = read_key_file((data_dir / "keys.txt").read_text())
        catalog = event_catalog()
        with peak_rss() as mb:
            t, cpu = time.perf_counter(), time.process_time()
            before = os.times()
            # As `fapiao evidence verify` does: the invoice streams checked in parallel.
            result = verify_bundle(out, catalog, keys, workers=default_workers())
            took, took_cpu = time.perf_counter() - t, time.process_time() - cpu
            after = os.times()
        workers = after.children_user + after.children_system
        workers -= before.children_user + before.children_system
        return {
            "s": took,
            "cpu_s": took_cpu + workers,
            "rss_mb": mb[0],
            "workers": result.workers,
            "failures": result.failures[:3],
        }
    lines = (data_dir / "ids.txt").read_text().splitlines()[: int(given["invoices"])]
    ids = [uuid.UUID(line) for line in lines]
    services = build_services(Settings(database_url=given["url"], data_dir=data_dir))
    try:
        by = Provenance("bench", Source.CLI, datetime(2026, 11, 3, tzinfo=UTC))
        request = ExportRequest(TENANT, ids, by=by)
        del lines
        with peak_rss() as mb:
            t, cpu = time.perf_counter(), time.process_time()
            report = export_bundle(services, request, out)
            took, took_cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        services.close()
    return {
        "s": took,
        "cpu_s": took_cpu,
        "rss_mb": mb[0],
        "invoices": report.invoices,
        "events": report.events,
    }


if __name__ == "__main__":
    main()
