"""Our event-store recorders: the library's, plus positions and the database's `recorded_at`.

On SQLite the library inserts positionally, which breaks once alembic adds `recorded_at`
(research note 4.3), so the insert names its columns here.

With group commit enabled (`enable_group_commit`, FAPIAO_GROUP_COMMIT), a save that passes
`group_commit=True` (the command loop's) shares a transaction with the concurrent ones
(`infrastructure/store/group_commit.py`): each command's rows under a savepoint of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.utils import retry
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Composed, Identifier

from application.ports import StoredEventRow
from infrastructure.store.group_commit import GroupCommit

WRITE_STATEMENT_MARGIN = 10  # seconds the insert may run once it holds the lock
STREAMS_PER_QUERY = 500  # select_streams: streams read per query (SQLite's variable limit)

_BEGIN, _COMMIT, _ROLLBACK = SQL("BEGIN"), SQL("COMMIT"), SQL("ROLLBACK")

# Table names below are the library's fixed names, never user input.
# ruff: noqa: S608


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        self.insert_events_statement = (
            f"INSERT INTO {events_table_name} "
            "(originator_id, originator_version, topic, state) VALUES (?,?,?,?)"
        )
        self.group: GroupCommit | None = None

    def enable_group_commit(self, max_wait: float, max_size: int) -> None:
        """Let saves with `group_commit=True` share transactions (see the module docstring)."""
        self.group = GroupCommit(
            super().insert_events, self._insert_groups, max_wait=max_wait, max_size=max_size
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], *, group_commit: bool = False, **kwargs: Any
    ) -> Sequence[int] | None:
        if group_commit and self.group is not None and stored_events:
            return self.group.put(stored_events)
        return super().insert_events(stored_events, **kwargs)

    def _insert_groups(self, groups: Sequence[Sequence[StoredEvent]]) -> list[Sequence[int] | None]:
        """Each group's rows under a savepoint in one transaction; None for a group whose rows
        broke a constraint (rolled back to its savepoint, the others kept)."""
        made: list[Sequence[int] | None] = []
        with self.datastore.transaction(commit=True) as c:
            for events in groups:
                c.execute("SAVEPOINT fapiao_member")
                try:
                    made.append(self._insert_events(c, events))
                except sqlite3.IntegrityError:
                    c.execute("ROLLBACK TO fapiao_member")
                    made.append(None)
                c.execute("RELEASE fapiao_member")
        return made

    def insert_rows(
        self,
        ids: Sequence[UUID],
        versions: Sequence[int],
        topics: Sequence[str],
        states: Sequence[bytes],
    ) -> Sequence[int]:
        """`insert_events` of rows given column by column (the batch path): the same insert
        in the same transaction under the same lock, returning their positions in order."""
        return (
            self.insert_events(
                [StoredEvent(*row) for row in zip(ids, versions, topics, states, strict=True)]
            )
            or []
        )

    def position_of(self, originator_id: UUID, version: int) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid FROM {self.events_table_name} "
                "WHERE originator_id=? AND originator_version=?",
                (originator_id.hex, version),
            )
            row = c.fetchone()
        return None if row is None else int(row[0])

    def select_stream(self, originator_id: UUID) -> Sequence[StoredEventRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid AS position, originator_version, topic, state, recorded_at "
                f"FROM {self.events_table_name} WHERE originator_id=? "
                "ORDER BY originator_version",
                (originator_id.hex,),
            )
            rows = c.fetchall()
        return [
            StoredEventRow(
                position=r["position"],
                originator_id=originator_id,
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
                recorded_at=_sqlite_time(r["recorded_at"]),
            )
            for r in rows
        ]

    def select_streams(self, originator_ids: Sequence[UUID]) -> dict[UUID, list[StoredEventRow]]:
        found: dict[UUID, list[StoredEventRow]] = {i: [] for i in originator_ids}
        ids = list(found)
        for start in range(0, len(ids), STREAMS_PER_QUERY):
            chunk = ids[start : start + STREAMS_PER_QUERY]
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    "SELECT rowid AS position, originator_id, originator_version, topic, state, "
                    f"recorded_at FROM {self.events_table_name} "
                    f"WHERE originator_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY originator_id, originator_version",
                    [i.hex for i in chunk],
                )
                rows = c.fetchall()
            for r in rows:
                sid = UUID(r["originator_id"])
                found[sid].append(
                    StoredEventRow(
                        position=r["position"],
                        originator_id=sid,
                        originator_version=r["originator_version"],
                        topic=r["topic"],
                        state=bytes(r["state"]),
                        recorded_at=_sqlite_time(r["recorded_at"]),
                    )
                )
        return found

    def select_rows(self, after: int, limit: int) -> Sequence[StoredEventRow]:
        """Stored events after a position, in log order, with recorded_at (for sealing)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid AS position, originator_id, originator_version, topic, state, "
                f"recorded_at FROM {self.events_table_name} WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            rows = c.fetchall()
        return [
            StoredEventRow(
                position=r["position"],
                originator_id=UUID(r["originator_id"]),
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
                recorded_at=_sqlite_time(r["recorded_at"]),
            )
            for r in rows
        ]


def _sqlite_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(events_table_name))
        # The write's bounds: waiting for the table lock, and the whole statement.
        lock = max(int(datastore.lock_timeout), 1)
        # One statement (a pipeline takes no multi-statement string), local to the transaction.
        self._timeouts_sql = SQL(
            "SELECT set_config('lock_timeout', '{}s', true), "
            "set_config('statement_timeout', '{}s', true)"
        ).format(SQL(str(lock)), SQL(str(lock + WRITE_STATEMENT_MARGIN)))
        # Arrays sent in binary: no text escaping of bytea on either side.
        self._insert_sql = SQL(
            "SELECT notification_id FROM {}.fapiao_insert_events("
            "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
        ).format(Identifier(datastore.schema))
        self._insert_groups_sql = SQL(
            "SELECT member_no, notification_id FROM {}.fapiao_insert_event_groups("
            "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::int[])"
        ).format(Identifier(datastore.schema))
        self.group: GroupCommit | None = None
        self._position_sql = SQL(
            "SELECT notification_id FROM {} WHERE originator_id=%s AND originator_version=%s"
        ).format(table)
        self._rows_sql = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state, "
            "recorded_at FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table)
        self._stream_sql = SQL(
            "SELECT notification_id, originator_version, topic, state, recorded_at FROM {} "
            "WHERE originator_id=%s ORDER BY originator_version"
        ).format(table)
        self._streams_sql = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state, "
            "recorded_at FROM {} WHERE originator_id = ANY(%s::uuid[]) "
            "ORDER BY originator_id, originator_version"
        ).format(table)

    def enable_group_commit(self, max_wait: float, max_size: int) -> None:
        """Let saves with `group_commit=True` share transactions (see the module docstring)."""
        self.group = GroupCommit(
            self._insert_one, self._insert_groups, max_wait=max_wait, max_size=max_size
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], *, group_commit: bool = False, **kwargs: Any
    ) -> Sequence[int] | None:
        """One statement (migration 0018): the payload is sent whole before the server runs
        it, so the EXCLUSIVE lock it takes is never held waiting on this client; a lock and a
        statement timeout bound it; its COMMIT is sent with it (`_write`). With `group_commit`
        (and grouping enabled) the events join the next group's transaction; an outage error
        is retried here, by each member, as alone."""
        if not stored_events:
            return []
        if group_commit and self.group is not None:
            return self.group.put(stored_events)
        return self._insert_one(stored_events)

    def _insert_one(self, stored_events: Sequence[StoredEvent]) -> Sequence[int]:
        return self._insert_arrays(
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_rows(
        self,
        ids: Sequence[UUID],
        versions: Sequence[int],
        topics: Sequence[str],
        states: Sequence[bytes],
    ) -> Sequence[int]:
        """`insert_events` of rows given column by column (the batch path): the same function,
        lock and timeouts; their positions in order."""
        if not ids:
            return []
        return self._insert_arrays(list(ids), list(versions), list(topics), list(states))

    def _insert_arrays(
        self, ids: list[UUID], versions: list[int], topics: list[str], states: list[bytes]
    ) -> list[int]:
        rows = self._write(self._insert_sql, (ids, versions, topics, states))
        return [int(r["notification_id"]) for r in rows]

    def _write(self, statement: SQL | Composed, params: tuple[list[Any], ...]) -> list[Any]:
        """One write transaction in one round trip: BEGIN, the timeouts, the statement and
        COMMIT sent together as a pipeline and run by the server back to back, so the lock
        the statement takes is released without waiting on this client (psycopg's own
        transaction would add a round trip for BEGIN and one for COMMIT, the lock held over
        the second). A refusal makes the server skip the rest of the pipeline; the
        transaction it leaves open is rolled back here before the error is raised."""
        with self.datastore.get_connection() as conn:
            conn.autocommit = True  # BEGIN and COMMIT are sent by us, in the pipeline
            try:
                with conn.cursor() as curs:
                    with conn.pipeline():
                        conn.execute(_BEGIN)
                        conn.execute(self._timeouts_sql)
                        curs.execute(statement, params)
                        conn.execute(_COMMIT)
                    rows: list[Any] = curs.fetchall()
            except BaseException:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute(_ROLLBACK)
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = False
        return rows

    def _insert_groups(self, groups: Sequence[Sequence[StoredEvent]]) -> list[Sequence[int] | None]:
        """Every group's events in one statement and transaction (migration 0021): each
        group's rows in a block of their own, so a group whose rows break a constraint is
        rolled back alone (None) and the others kept."""
        events = [e for g in groups for e in g]
        params = (
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
            [i for i, g in enumerate(groups) for _ in g],
        )
        rows = self._write(self._insert_groups_sql, params)
        made: list[list[int] | None] = [[] for _ in groups]
        for r in rows:
            ids = made[r["member_no"]]
            if r["notification_id"] is None:
                made[r["member_no"]] = None
            elif ids is not None:
                ids.append(int(r["notification_id"]))
        return list(made)

    def select_rows(self, after: int, limit: int) -> Sequence[StoredEventRow]:
        """Stored events after a position, in log order, with recorded_at (for sealing)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._rows_sql, (after, limit), prepare=True)
            rows: Any = curs.fetchall()
        return [
            StoredEventRow(
                position=r["notification_id"],
                originator_id=r["originator_id"],
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
                recorded_at=r["recorded_at"],
            )
            for r in rows
        ]

    def position_of(self, originator_id: UUID, version: int) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._position_sql, (originator_id, version), prepare=True)
            row: Any = curs.fetchone()
        return None if row is None else int(row["notification_id"])

    def select_stream(self, originator_id: UUID) -> Sequence[StoredEventRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._stream_sql, (originator_id,), prepare=True)
            rows: Any = curs.fetchall()
        return [
            StoredEventRow(
                position=r["notification_id"],
                originator_id=originator_id,
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
                recorded_at=r["recorded_at"],
            )
            for r in rows
        ]

    def select_streams(self, originator_ids: Sequence[UUID]) -> dict[UUID, list[StoredEventRow]]:
        found: dict[UUID, list[StoredEventRow]] = {i: [] for i in originator_ids}
        ids = list(found)
        for start in range(0, len(ids), STREAMS_PER_QUERY):
            chunk = ids[start : start + STREAMS_PER_QUERY]
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self._streams_sql, (chunk,), prepare=True)
                rows: Any = curs.fetchall()
            for r in rows:
                found[r["originator_id"]].append(
                    StoredEventRow(
                        position=r["notification_id"],
                        originator_id=r["originator_id"],
                        originator_version=r["originator_version"],
                        topic=r["topic"],
                        state=bytes(r["state"]),
                        recorded_at=r["recorded_at"],
                    )
                )
        return found


# The recorders that can group commands' saves (FAPIAO_GROUP_COMMIT).
GroupingRecorder = LedgerSQLiteRecorder | LedgerPostgresRecorder
