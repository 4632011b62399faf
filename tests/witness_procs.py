"""Run `fapiao witness serve` processes for tests (real processes, real HTTP on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class WitnessProc:
    name: str
    state: Path
    url: str
    vkey: str
    origin: str
    log_keys: list[str]
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Take the witness offline (its state stays in its folder)."""
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def refusals(self) -> list[str]:
        args = ["--state", str(self.state), "--name", self.name, "--origin", self.origin]
        for k in self.log_keys:
            args += ["--log-key", k]
        r = cli("witness", "refusals", *args)
        assert r.returncode == 0, r.stderr
        return [line for line in r.stdout.splitlines() if line.startswith("{")]


@contextmanager
def witness_process(
    folder: Path, name: str, origin: str, log_keys: list[str], nice: int = 0
) -> Iterator[WitnessProc]:
    """A witness process; `nice` lowers its CPU priority (benchmarks: another party's machine)."""
    r = cli("witness", "key", "--state", str(folder), "--name", name)
    assert r.returncode == 0, r.stderr
    vkey = r.stdout.strip()
    port = free_port()
    args = ["--state", str(folder), "--name", name, "--origin", origin, "--port", str(port)]
    # As the README has it: the log's keys (`fapiao ledger keys`) in a file, one per line.
    keys_file = folder / "log.vkey"
    keys_file.write_text("".join(f"{k}\n" for k in log_keys), encoding="utf-8")
    args += ["--log-keys", str(keys_file)]
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "witness", "serve", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"witness did not start: {(folder / 'serve.log').read_text()!r}"
                    ) from None
                time.sleep(0.1)
        yield WitnessProc(name, folder, f"http://127.0.0.1:{port}", vkey, origin, log_keys, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()
