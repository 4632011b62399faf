"""Leadership and wake-up per store: a Postgres advisory lock plus LISTEN/NOTIFY, or a file lock
plus an in-process event on SQLite. NOTIFY is a hint; the worker re-polls on a timer anyway."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import psycopg

LOCK_CLASS = 0x46504C  # "FPL": our namespace of advisory locks


class PostgresLeadership:
    """Holds `pg_try_advisory_lock` on a dedicated connection that also LISTENs for saves."""

    def __init__(self, conninfo: str, projection: str, channel: str) -> None:
        self.conninfo = conninfo
        self.projection = projection
        self.channel = channel
        self.conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        self.conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        # LISTEN before the first read, so no save between the read and the wait is missed.
        self.conn.execute(f'LISTEN "{self.channel}"')
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
            (LOCK_CLASS, f"projection:{self.projection}"),
        ).fetchone()
        return bool(row and row[0])

    def wait_for_events(self, timeout: float) -> bool:
        assert self.conn is not None
        return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))

    def still_held(self) -> bool:
        """Whether this session still holds the lock (checked before each batch commits: a
        leader that lost its lock connection must not write beside its successor)."""
        if self.conn is None or self.conn.closed:
            return False
        try:
            row = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() "
                "AND locktype = 'advisory' AND granted AND classid = %s::oid "
                "AND objid = (hashtext(%s)::bigint & 4294967295)::oid AND objsubid = 2)",
                (LOCK_CLASS, f"projection:{self.projection}"),
            ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()  # ends the session: the advisory lock goes with it
            self.conn = None

    @staticmethod
    def holder_pid(conninfo: str, projection: str) -> int | None:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::oid AND objid = (hashtext(%s)::bigint & 4294967295)::oid "
                "AND objsubid = 2 "
                # an advisory lock is this database's: another ledger on the server has its own
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LOCK_CLASS, f"projection:{projection}"),
            ).fetchone()
        return None if row is None else int(row[0])


class FileLeadership:
    """An exclusive `flock` on a file beside the SQLite database, plus an in-process wake-up."""

    def __init__(self, path: Path, wake: threading.Event) -> None:
        self.path = path
        self.wake = wake
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def wait_for_events(self, timeout: float) -> bool:
        woken = self.wake.wait(timeout)
        self.wake.clear()
        return woken

    def still_held(self) -> bool:
        return self.fd is not None  # an open descriptor keeps its flock

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    @staticmethod
    def is_held(path: Path) -> bool:
        probe = FileLeadership(path, threading.Event())
        try:
            return not probe.try_acquire()
        finally:
            probe.release()
