"""Reads from a streaming replica (FAPIAO_READ_DATABASE_URL): how far behind it is, and how far
each projection has got there, so a read that asked for a position goes to the primary while the
replica has not replayed it yet."""

from __future__ import annotations

from sqlalchemy import Engine, Table, select, text

# Replay lag as PostgreSQL reports it on a standby: 0 when everything received is replayed,
# else the age of the last replayed transaction (an idle primary does not make a lag).
LAG_MS = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000, 0) END"
)


class Replica:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lag_ms(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(LAG_MS).scalar_one())

    def position(self, tracking: Table, application_name: str) -> int:
        """The projection's tracked position as the replica has replayed it."""
        query = select(tracking.c.notification_id).where(
            tracking.c.application_name == application_name
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
