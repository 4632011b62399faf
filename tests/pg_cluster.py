"""Private PostgreSQL clusters for the tests that need a server of their own: a restore target
elsewhere, a primary with a streaming replica. Each is initdb'd into a temporary folder, run as
the `postgres` OS user (initdb and pg_ctl refuse root) on a free port, with trust auth on
127.0.0.1 only, and always stopped and removed by its fixture. The shared cluster at 5432 is
never touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PG_USER = "postgres"


def bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = list(args) if os.geteuid() != 0 else ["runuser", "-u", PG_USER, "--", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)


class PrivateCluster:
    """A cluster in its own folder on its own port; `url(db)` connects as the postgres user."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.started = False

    @classmethod
    def create(cls) -> PrivateCluster:
        root = Path(tempfile.mkdtemp(prefix="fapiao-pg-"))
        shutil.chown(root, PG_USER, PG_USER)
        cluster = cls(root, free_port())
        as_postgres(
            str(bin_dir() / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        cluster._configure(primary=True)
        return cluster

    def _configure(self, primary: bool) -> None:
        conf = self.data / "postgresql.conf"
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "fsync = off",
            "shared_buffers = 32MB",
            "max_connections = 60",
        ]
        if primary:
            lines += ["wal_level = replica", "max_wal_senders = 4", "wal_keep_size = 64MB"]
        with conf.open("a") as f:
            f.write("\n".join(lines) + "\n")
        if primary:
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
                "local all all trust\n"
            )

    def start(self) -> None:
        as_postgres(
            str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.started = True

    def stop(self) -> None:
        if self.started:
            as_postgres(str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, statement: str, dbname: str = "postgres") -> None:
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def replica(self) -> PrivateCluster:
        """A streaming replica of this cluster: pg_basebackup into a new folder, started."""
        root = Path(tempfile.mkdtemp(prefix="fapiao-pg-replica-"))
        shutil.chown(root, PG_USER, PG_USER)
        standby = PrivateCluster(root, free_port())
        as_postgres(
            str(bin_dir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", PG_USER, "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        standby._configure(primary=False)
        standby.start()
        return standby

    def wait_until_streaming(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.url(), autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
        raise TimeoutError("the replica did not start streaming")
