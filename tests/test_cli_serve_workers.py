"""`fapiao serve --workers 2`: two server processes answer, and the projection runners run once,
in the supervising process (one leader per projection, as with one process). Both stores."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from infrastructure.bootstrap import build_services
from infrastructure.projections.leadership import LOCK_CLASS
from infrastructure.settings import Settings
from tests.builders import SELLER, issue_json

ROOT = Path(__file__).resolve().parents[1]


def _call(port: int, path: str, key: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), {k.lower(): v for k, v in e.headers.items()}


def _wait_up(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("fapiao serve --workers 2 did not answer within 90 s")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _flock_holders(paths: list[Path]) -> set[int]:
    """The pids holding a flock on any of `paths` (from /proc/locks, by inode)."""
    inodes = {p.stat().st_ino for p in paths}
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "FLOCK" in parts and int(parts[5].rsplit(":", 1)[1]) in inodes:
            holders.add(int(parts[4]))
    return holders


@contextlib.contextmanager
def _serving_two_workers(
    settings: Settings, **extra_env: str
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """`fapiao serve --workers 2` on a free port, up and answering; stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "FAPIAO_DATABASE_URL": settings.url.render_as_string(hide_password=False),
        "FAPIAO_DATA_DIR": str(settings.data_dir),
        **extra_env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_up(port, proc)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_two_workers_serve_and_one_process_leads(settings: Settings) -> None:
    services = build_services(settings)
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        _, key = services.keys.create_key(SELLER, "clerk")
        projections = sorted(services.workers)
    finally:
        services.close()
    with _serving_two_workers(settings) as (port, proc):
        servers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        assert len(servers) == 2
        made, body, _ = _call(port, "/v1/invoices", key, issue_json())
        assert made == 201, body
        # The supervisor's runner projects it; either worker then reads it.
        got, invoice, headers = _call(
            port, f"/v1/invoices/{body['invoice_id']}?consistent_after={body['position']}", key
        )
        assert got == 200, invoice
        assert invoice["status"] == "issued" and headers["x-fapiao-read-from"] == "primary"
        if settings.is_postgres:
            conninfo = settings.url.set(drivername="postgresql").render_as_string(False)
            with psycopg.connect(conninfo) as conn:
                held = conn.execute(  # this test's database: others run beside it
                    "SELECT count(*), count(DISTINCT objid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND classid = %s::oid "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = "
                    "current_database())",
                    (LOCK_CLASS,),
                ).fetchone()
            assert held == (len(projections), len(projections))  # one leader each
        else:
            locks = [
                settings.sqlite_path.with_name(f"{settings.sqlite_path.name}.{name}.lock")
                for name in projections
            ]
            assert _flock_holders(locks) == {proc.pid}  # the supervisor, not a server worker


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _get(port: int, path: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:  # noqa: S310
            return r.status, r.read().decode(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), {k.lower(): v for k, v in e.headers.items()}


def _unmatched_count(text: str) -> float:
    """fapiao_http_requests_total for GET of unmatched routes answered 404, as scraped."""
    for line in text.splitlines():
        if line.startswith("fapiao_http_requests_total{") and 'route="unmatched"' in line:
            if 'method="GET"' in line and 'status="404"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_worker_reports_the_requests_of_all_of_them(
    settings: Settings, tmp_path: Path
) -> None:
    """With two workers, each scrape of /metrics (whichever worker takes it) counts the
    requests both answered; the folder they count into is the serve's own, gone after it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    with _serving_two_workers(settings, TMPDIR=str(temp)) as (port, _):
        assert [p.name[:15] for p in temp.iterdir()] == ["fapiao-metrics-"]
        answered_by: set[str] = set()
        sent = 0
        while len(answered_by) < 2 or sent < 20:
            status, _, headers = _get(port, f"/no-such-route-{sent}")
            assert status == 404
            answered_by.add(headers["x-request-id"][:16])  # the answering process's prefix
            sent += 1
            assert sent < 400, "one worker answered every request"
        scrapes = [_get(port, "/metrics") for _ in range(8)]
        assert all(status == 200 for status, _, _ in scrapes)
        assert {_unmatched_count(text) for _, text, _ in scrapes} == {float(sent)}
        assert len({h["x-request-id"][:16] for _, _, h in scrapes} | answered_by) == 2
    assert list(temp.iterdir()) == []
