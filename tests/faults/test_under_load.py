"""Faults under load on a private PostgreSQL cluster (loopback only): the API and a worker run
as real processes while clients issue invoices, each retried with its Idempotency-Key on 503
or a lost connection. The database is restarted, then the API and the worker are killed with
SIGKILL and started again. Every 2xx's events are stored exactly once, nothing answered is
lost, no 5xx but 503, and the projection equals a rebuild. Prints its figures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx2 as httpx
import pytest
from sqlalchemy import select

from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from infrastructure.store.tables import invoice_status
from tests.builders import SELLER, issue_json
from tests.pg_cluster import PrivateCluster

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env, self.args = env, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "api.cli.main", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    own = PrivateCluster.create()
    try:
        own.start()
        own.execute('CREATE DATABASE "load"')
        yield own
    finally:
        own.remove()


def test_db_restart_and_sigkilled_api_and_worker_lose_nothing_and_duplicate_nothing(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    settings = Settings(database_url=cluster.url("load"), data_dir=tmp_path, environment="test")
    migrate.upgrade(settings)
    services = build_services(settings)
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    key = services.keys.create_key(SELLER, "clerk")[1]
    port = free_port()
    env = {
        **os.environ,
        "FAPIAO_DATABASE_URL": cluster.url("load"),
        "FAPIAO_DATA_DIR": str(tmp_path),
        "FAPIAO_LOG_LEVEL": "WARNING",
        "FAPIAO_METRICS_ENABLED": "false",
    }
    api = Process(env, "serve", "--port", str(port), "--no-worker")
    worker = Process(env, "worker")
    base = f"http://127.0.0.1:{port}"
    statuses: Counter[int] = Counter()
    answered: dict[str, str] = {}  # idempotency key -> invoice id, from a 2xx
    given_up: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    first_2xx_after: dict[str, float] = {}
    faults: dict[str, float] = {}

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                idem, body = f"c{n}-{i}", issue_json()
                headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        r = http.post("/v1/invoices", json=body, headers=headers)
                    except httpx.HTTPError:
                        time.sleep(0.1)  # the API is down: retry the same key
                        continue
                    with lock:
                        statuses[r.status_code] += 1
                    if r.status_code in (201, 200):
                        now = time.monotonic()
                        with lock:
                            answered[idem] = r.json()["invoice_id"]
                            for fault, at in faults.items():
                                if at <= now and fault not in first_2xx_after:
                                    first_2xx_after[fault] = now - at
                        break
                    time.sleep(0.1)  # 503 (or 409 in progress): retry the same key
                else:
                    given_up.append(idem)

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.5)
        cluster.stop()
        time.sleep(1.0)
        cluster.start()
        faults["database restart"] = time.monotonic()
        time.sleep(2.0)
        api.kill()
        api.start()
        faults["API SIGKILL"] = time.monotonic()
        time.sleep(3.0)
        worker.kill()
        worker.start()
        faults["worker SIGKILL"] = time.monotonic()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        seconds = time.monotonic() - started
        # the worker catches up with the head, then is stopped for the rebuild comparison
        services.engine.dispose()  # this process's pooled connections died with the restart
        services.write_engine.dispose()
        head = int(services.ledger.recorder.max_notification_id() or 0)
        view = services.worker("invoice_status")
        caught = time.monotonic() + 30
        while view.position() < head and time.monotonic() < caught:
            time.sleep(0.1)
        worker.stop()
        api.stop()
        stored = {
            UUID(i): len(list(services.ledger.event_log.select_stream(UUID(i))))
            for i in answered.values()
        }
        lost = sum(1 for n in stored.values() if n == 0)
        duplicates = sum(n - 1 for n in stored.values() if n > 1)
        receipts = len(set(answered))
        errors = {code: n for code, n in statuses.items() if code >= 500 and code != 503}
        with services.engine.connect() as conn:
            before = sorted(tuple(r) for r in conn.execute(select(invoice_status)))
        view.reset()
        view.catch_up()
        with services.engine.connect() as conn:
            after = sorted(tuple(r) for r in conn.execute(select(invoice_status)))
        recover = {f: round(s, 2) for f, s in first_2xx_after.items()}
        print(
            f"\nunder load: {len(answered)} commands answered 2xx in {seconds:.1f} s by "
            f"{CLIENTS} clients, statuses {dict(statuses)}, events of answered invoices "
            f"{sum(stored.values())}, duplicates {duplicates}, lost {lost}, gave up "
            f"{len(given_up)}, seconds to the first 2xx after each fault {recover}, "
            f"view rows {len(before)} (rebuild {len(after)})"
        )
        assert answered and receipts == len(stored) and not given_up
        assert lost == 0 and duplicates == 0 and all(n == 1 for n in stored.values())
        assert errors == {}
        assert before == after  # the projection equals a rebuild
        assert set(recover) == set(faults)
    finally:
        stop.set()
        api.stop()
        worker.stop()
        services.close()
