"""GET one invoice at 32 connections, beside the framework's ceiling, in the same run.

The ceiling is a minimal FastAPI app, one primary-key SELECT on invoice_status, the row written
with orjson, in two ways: in a worker thread through the same engine (driver, pool and isolation
settings: `create_engine_for`), and awaited on the event loop through a psycopg async pool of
the size ours uses there (AsyncStatusReader). The ratio is against the faster of the two.
Ours is `fapiao serve` answering GET /v1/invoices/{id} with a bearer key: authentication,
tenant isolation, the edge limits, the request log line and metrics included.
Both run under the same server settings (`api.cli.serving.run_server`: server, workers, limits)
on a fresh PostgreSQL database, and are loaded alternately with wrk (installed with apt-get if
missing) at 32 connections, a Lua script picking a random invoice id per request. Printed:
req/s, p50 and p99 for each (medians of the interleaved runs), and ours/ceiling.
Goal: ratio >= 0.7 and our p99 < 50 ms.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/read_bench.py [--quick] [--json]
        [--workers 2] [--server uvicorn|granian] [--admin-url postgresql://root@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

TENANT = "91110108769914581E"
CONNECTIONS = 32


def ceiling_app() -> Any:
    """The ceiling: FastAPI, one route, one primary-key SELECT, orjson (factory for the server)."""
    import orjson
    from fastapi import FastAPI, Response
    from sqlalchemy import text

    from infrastructure.settings import Settings
    from infrastructure.store.database import create_engine_for

    engine = create_engine_for(Settings())
    query = text("SELECT * FROM invoice_status WHERE invoice_id = :id")
    app = FastAPI()

    @app.get("/ceiling/{invoice_id}")
    def one(invoice_id: uuid.UUID) -> Response:
        with engine.connect() as conn:
            row = conn.execute(query, {"id": invoice_id}).first()
        if row is None:
            return Response(status_code=404)
        body = orjson.dumps(dict(row._mapping), default=str)
        return Response(body, media_type="application/json")

    # The same SELECT awaited on the event loop, through a psycopg async pool of the size ours
    # uses (AsyncStatusReader): the ceiling of that way of reading.
    from psycopg_pool import AsyncConnectionPool

    from infrastructure.projections.invoice_status_async import MAX_CONNECTIONS

    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pools: list[AsyncConnectionPool[Any]] = []

    @app.get("/ceiling-loop/{invoice_id}")
    async def one_on_the_loop(invoice_id: uuid.UUID) -> Response:
        if not pools:
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                dsn, min_size=1, max_size=MAX_CONNECTIONS, kwargs={"autocommit": True}, open=False
            )
            await pool.open()
            if pools:  # another request opened one meanwhile
                await pool.close()
            else:
                pools.append(pool)
        async with pools[0].connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM invoice_status WHERE invoice_id = %s", (invoice_id,)
            )
            names = [d.name for d in cursor.description or ()]
            found = await cursor.fetchone()
        if found is None:
            return Response(status_code=404)
        body = orjson.dumps(dict(zip(names, found, strict=True)), default=str)
        return Response(body, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_ceiling(port: int, workers: int, server: str) -> None:
    from api.cli.serving import run_server
    from infrastructure.settings import Settings

    run_server(
        "benchmarks.read_bench:ceiling_app",
        Settings(),
        host="127.0.0.1",
        port=port,
        workers=workers,
        server=server,  # type: ignore[arg-type]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk (the Debian package)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install -y wrk")
    return found


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no answer from {url} within {timeout:.0f} s")


def lua_script(path: Path, prefix: str, ids: list[str], secret: str | None) -> None:
    quoted = ",".join(f'"{i}"' for i in ids)
    auth = f'wrk.headers["Authorization"] = "Bearer {secret}"\n' if secret else ""
    path.write_text(
        f"local ids = {{{quoted}}}\n"
        f"{auth}"
        "local n = #ids\n"
        "request = function()\n"
        f'  return wrk.format("GET", "{prefix}" .. ids[math.random(n)])\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("FAPIAO errors %d non2xx %d\\n", '
        "summary.errors.status + summary.errors.connect + summary.errors.read + "
        "summary.errors.write + summary.errors.timeout, summary.errors.status))\n"
        "end\n"
    )


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, url: str, script: Path, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {
        int(p): _ms(v, u)
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"FAPIAO errors (\d+) non2xx (\d+)", out)
    bad = int(errors.group(1)) if errors else 0
    return {
        "rps": rps,
        "p50": pct.get(50, float("nan")),
        "p99": pct.get(99, float("nan")),
        "errors": bad,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server: its process and its children (the server workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def seed(url: str, n: int) -> tuple[list[str], str]:
    """n invoices of one tenant, projected; returns their ids and a clerk key's secret."""
    from sqlalchemy import text

    from benchmarks.ledger_bench import by, draft
    from infrastructure.bootstrap import build_services
    from infrastructure.settings import Settings
    from infrastructure.store import migrate

    settings = Settings(database_url=url)
    migrate.upgrade(settings)
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(TENANT, "北京云帆科技有限公司")
        _, secret = services.keys.create_key(TENANT, "clerk,auditor", "read bench")
        for start in range(0, n, 100):
            services.ledger.issue_invoices(
                TENANT, [draft() for _ in range(min(100, n - start))], by()
            )
        services.bring_up_to_date("invoice_status")
        with services.engine.connect() as conn:
            ids = [
                str(i)
                for i in conn.execute(text("SELECT invoice_id FROM invoice_status")).scalars()
            ]
    finally:
        services.close()
    return ids, secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--json", action="store_true", help="a JSON summary as the last line")
    parser.add_argument("--workers", type=int, default=2, help="server processes (both apps)")
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--serve-ceiling", type=int, help=argparse.SUPPRESS)  # internal: a port
    args = parser.parse_args()
    if args.serve_ceiling:
        serve_ceiling(args.serve_ceiling, args.workers, args.server)
        return

    invoices, seconds, reps = (200, 5, 3) if args.quick else (2000, 15, 5)
    load = os.getloadavg()[0]
    wrk = ensure_wrk()
    name = f"fapiao_read_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    procs: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="fapiao-read-bench-"))
    try:
        print(
            f"GET one invoice, {CONNECTIONS} connections, wrk; {args.server} x{args.workers} "
            f"workers both; PostgreSQL; {os.cpu_count()} cores, load {load:.2f}"
            f" ({'quick' if args.quick else 'full'}: {reps} runs of {seconds} s each, interleaved)",
            flush=True,
        )
        ids, secret = seed(url, invoices)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FAPIAO_DATABASE_URL": url,
            "FAPIAO_DATA_DIR": str(work / "data"),
            "FAPIAO_LOG_FORMAT": "json",
            # What `fapiao serve` sets, for the ceiling too: the same pools on both sides.
            "FAPIAO_POOL_KEEP": "1",
        }
        ceiling_port, ours_port = free_port(), free_port()
        server_args = ["--workers", str(args.workers), "--server", args.server]

        def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(  # noqa: S603 - our own commands, fixed arguments
                [sys.executable, *argv, *server_args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            procs.append(proc)
            return proc

        ceiling = spawn([__file__, "--serve-ceiling", str(ceiling_port)])
        ours = spawn(["-m", "api.cli.main", "serve", "--port", str(ours_port)])
        wait_up(f"http://127.0.0.1:{ceiling_port}/healthz", ceiling)
        wait_up(f"http://127.0.0.1:{ours_port}/healthz", ours)
        scripts = {
            "ceiling": work / "ceiling.lua",
            "ceiling_loop": work / "ceiling_loop.lua",
            "ours": work / "ours.lua",
        }
        lua_script(scripts["ceiling"], "/ceiling/", ids, None)
        lua_script(scripts["ceiling_loop"], "/ceiling-loop/", ids, None)
        lua_script(scripts["ours"], "/v1/invoices/", ids, secret)
        urls = {
            "ceiling": f"http://127.0.0.1:{ceiling_port}",
            "ceiling_loop": f"http://127.0.0.1:{ceiling_port}",
            "ours": f"http://127.0.0.1:{ours_port}",
        }
        for which in urls:  # warm-up: connections, caches, the first imports
            run_wrk(wrk, urls[which], scripts[which], 2)
        runs: dict[str, list[dict[str, float]]] = {w: [] for w in urls}
        pids = {"ceiling": ceiling.pid, "ceiling_loop": ceiling.pid, "ours": ours.pid}
        for _ in range(reps):
            for which in urls:
                before = cpu_seconds(pids[which])
                run = run_wrk(wrk, urls[which], scripts[which], seconds)
                # Server CPU per answer: less moved by the machine's other load than req/s.
                run["cpu_ms"] = (cpu_seconds(pids[which]) - before) * 1000 / (run["rps"] * seconds)
                runs[which].append(run)
        figures = {
            w: {
                k: statistics.median(r[k] for r in runs[w]) for k in ("rps", "p50", "p99", "cpu_ms")
            }
            for w in runs
        }
        errors = {w: sum(r["errors"] for r in runs[w]) for w in runs}
        for w, label in (
            ("ceiling", "ceiling (FastAPI + PK SELECT, thread)"),
            ("ceiling_loop", "ceiling (FastAPI + PK SELECT, loop)"),
            ("ours", "ours (GET /v1/invoices/{id})"),
        ):
            f = figures[w]
            each = ", ".join(f"{r['rps']:,.0f}" for r in runs[w])
            print(
                f"  {label:<36} {f['rps']:>8,.0f} req/s  p50 {f['p50']:6.2f} ms  "
                f"p99 {f['p99']:6.2f} ms  CPU {f['cpu_ms']:.2f} ms/req  (runs: {each};"
                f" errors {errors[w]})"
            )
        # Against the faster of the two ways to read: ours reads on the loop where it can.
        best = max(("ceiling", "ceiling_loop"), key=lambda w: figures[w]["rps"])
        ratio = figures["ours"]["rps"] / figures[best]["rps"]
        passed = ratio >= 0.7 and figures["ours"]["p99"] < 50 and errors["ours"] == 0
        print(
            f"  ratio ours/ceiling ({best.replace('_', ' ')}): {ratio:.2f}  "
            "(goal >= 0.70, p99 < 50 ms): "
            f"{'pass' if passed else 'FAIL'}"
        )
        if args.json:
            row = {
                "path": "GET one invoice, 32 connections",
                "ours": round(figures["ours"]["rps"], 1),
                "unit": "req/s",
                "reference": round(figures[best]["rps"], 1),
                "reference_label": "FastAPI + one primary-key SELECT, same server settings, wrk",
                "ratio": round(ratio, 3),
                "goal": "ratio >= 0.7, p99 < 50 ms",
                "pass": passed,
                "extra": {
                    "p50_ms": figures["ours"]["p50"],
                    "p99_ms": figures["ours"]["p99"],
                    "ceiling": best,
                    "ceiling_p50_ms": figures[best]["p50"],
                    "ceiling_p99_ms": figures[best]["p99"],
                    "ceiling_thread_rps": round(figures["ceiling"]["rps"], 1),
                    "ceiling_loop_rps": round(figures["ceiling_loop"]["rps"], 1),
                    "cpu_ms_per_request": round(figures["ours"]["cpu_ms"], 3),
                    "ceiling_cpu_ms_per_request": round(figures[best]["cpu_ms"], 3),
                    "server": args.server,
                    "workers": args.workers,
                    "errors": errors["ours"],
                    "runs": reps,
                    "seconds_per_run": seconds,
                },
            }
            print(json.dumps({"bench": "read_bench", "load": load, "rows": [row]}))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
