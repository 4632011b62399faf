"""What the edge's limits cost an attacker and the server: a real `fapiao serve` (SQLite, its own
data folder), then a 50 MiB JSON body (with Content-Length, and chunked without one) and a
XLSX of a few hundred KiB whose shared strings inflate to 200 MiB. Prints the time to the answer
and the server's resident memory before and after each. Goals: refused within a second, memory
flat (a few MiB at most).

    .venv/bin/python benchmarks/edge_bench.py
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, head: bytes, body_chunks: list[bytes]) -> tuple[float, str]:
    """Send the head and then as much of the body as the server reads; returns (seconds to
    the status line, status line)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        s.settimeout(0.001)
        answer = b""
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError, BlockingIOError):
                break
            try:
                answer += s.recv(65536)
                if b"\r\n" in answer:
                    break
            except (TimeoutError, BlockingIOError):
                pass
        s.settimeout(30)
        while b"\r\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    return time.perf_counter() - started, answer.split(b"\r\n", 1)[0].decode()


def xlsx_bomb(inflated: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        with z.open("xl/sharedStrings.xml", "w") as entry:
            chunk = b"<si><t>" + b"A" * (MIB - 16) + b"</t></si>"
            for _ in range(inflated // len(chunk) + 1):
                entry.write(chunk)
    return buffer.getvalue()


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="fapiao-edge-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAPIAO_")}
    env["FAPIAO_DATA_DIR"] = str(data)
    cli = [sys.executable, "-m", "api.cli.main"]
    subprocess.run([*cli, "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    keys = subprocess.run(
        [*cli, "keys", "create", "--tenant", "91110108769914581E", "--tenant-name", "bench",
         "--roles", "clerk"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    key = re.search(r"(fpl_\S+)", keys).group(1)  # type: ignore[union-attr]
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port), "--no-worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.2)
        auth = f"Authorization: Bearer {key}\r\n".encode()
        get = b"GET /v1/invoices HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        for _ in range(3):
            request(port, get, [])
        baseline, status = request(port, get, [])
        print(f"server RSS at start: {rss_mib(server.pid):.1f} MiB")
        print(f"GET /v1/invoices: {baseline * 1000:.1f} ms ({status})")

        body = [b"{" + b" " * (MIB - 1)] + [b" " * MIB] * 49
        head = (
            b"POST /v1/invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + f"Content-Length: {50 * MIB}\r\n\r\n".encode()
        )
        before = rss_mib(server.pid)
        took, status = request(port, head, body)
        print(
            f"50 MiB JSON, Content-Length: {took * 1000:.1f} ms ({status}); "
            f"RSS {before:.1f} -> {rss_mib(server.pid):.1f} MiB"
        )

        chunked = [f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in body] + [b"0\r\n\r\n"]
        head = (
            b"POST /v1/invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        before = rss_mib(server.pid)
        took, status = request(port, head, chunked)
        print(
            f"50 MiB JSON, chunked: {took * 1000:.1f} ms ({status}); "
            f"RSS {before:.1f} -> {rss_mib(server.pid):.1f} MiB"
        )

        bomb = xlsx_bomb(200 * MIB)
        boundary = "benchXYZ"
        payload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                'filename="export.xlsx"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + bomb
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = (
            b"POST /v1/reconciliations HTTP/1.1\r\nHost: x\r\n"
            + auth
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        )
        before = rss_mib(server.pid)
        took, status = request(port, head, [payload])
        print(
            f"XLSX of {len(bomb) / 1024:.0f} KiB inflating to 200 MiB: {took * 1000:.1f} ms "
            f"({status}); RSS {before:.1f} -> {rss_mib(server.pid):.1f} MiB"
        )
        after, status = request(port, get, [])
        print(f"GET /v1/invoices afterwards: {after * 1000:.1f} ms ({status})")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
