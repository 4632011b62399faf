"""The embedded default under concurrent clients: `fapiao serve` on SQLite with the in-process
worker (projections, ticker, deliverer), driven over HTTP by 1 and then 8 client threads for a
few seconds each. Each client issues an invoice and submits it (two commands per round).
Prints commands/s, the 8:1 ratio, and the count of 5xx (goal: >= 150/s at 8 clients, 0 5xx).

    .venv/bin/python benchmarks/sqlite_concurrency_bench.py [--seconds 10] [--no-worker]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx

from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate

SELLER, BUYER = "91110108769914581E", "91330100716105852F"
_serial = iter(range(1, 10**9))
_serial_lock = threading.Lock()


def issue_json() -> dict[str, object]:
    with _serial_lock:
        serial = next(_serial)
    line = {"name": "*信息技术服务*软件维护", "amount": "1000.00", "tax": "130.00", "rate": "0.13"}
    return {
        "number": f"26112000{serial:012d}",
        "invoice_type": "digital_special",
        "issued_on": "2026-11-18",
        "seller": {"name": "北京云帆科技有限公司", "taxpayer_code": SELLER},
        "buyer": {"name": "杭州青禾贸易有限公司", "taxpayer_code": BUYER},
        "amount": "1000.00",
        "tax": "130.00",
        "total": "1130.00",
        "lines": [line],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_clients(base: str, key: str, clients: int, seconds: float) -> tuple[int, Counter[int]]:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    ends = time.monotonic() + seconds

    def client() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            while time.monotonic() < ends:
                r = http.post("/v1/invoices", json=issue_json())
                codes = [r.status_code]
                if r.status_code == 201:
                    ref = r.json()["invoice_id"]
                    codes.append(http.post(f"/v1/invoices/{ref}/submissions", json={}).status_code)
                with lock:
                    statuses.update(codes)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return int(sum(statuses.values()) / elapsed), statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'ledger.db'}"
        settings = Settings(database_url=url, data_dir=Path(folder))
        migrate.upgrade(settings)
        services = build_services(settings)
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        key = services.keys.create_key(SELLER, "clerk")[1]
        services.close()
        port = free_port()
        env = {**os.environ, "FAPIAO_DATABASE_URL": url, "FAPIAO_DATA_DIR": folder}
        env["FAPIAO_LOG_LEVEL"] = "WARNING"
        command = [sys.executable, "-m", "api.cli.root", "serve", "--port", str(port)]
        fapiao = Path(sys.executable).with_name("fapiao")
        if fapiao.exists():
            command = [str(fapiao), "serve", "--port", str(port)]
        if args.no_worker:
            command.append("--no-worker")
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            worker = "without" if args.no_worker else "with"
            print(f"SQLite, fapiao serve {worker} the in-process worker, {args.seconds:.0f} s each")
            rates = {}
            for clients in (1, 8):
                rate, statuses = run_clients(base, key, clients, args.seconds)
                errors = sum(n for code, n in statuses.items() if code >= 500)
                rates[clients] = rate
                print(
                    f"  {clients} client(s): {rate} commands/s, "
                    f"statuses {dict(statuses)}, 5xx {errors}"
                )
            print(f"  8:1 ratio {rates[8] / max(rates[1], 1):.2f} (goal: >= 150/s at 8, 0 5xx)")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
