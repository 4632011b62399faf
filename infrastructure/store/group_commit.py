"""Group commit: concurrent commands of one process share one transaction (FAPIAO_GROUP_COMMIT).

A command's save (`InvoiceLedger.run_once`) hands its encoded events to `GroupCommit.put`,
which blocks until they are committed. The first caller to find no commit in flight leads: it
waits a little for company (at most `max_wait` seconds, and only while it expects more: as many
as its previous group had), takes up to `max_size` commands from the queue, and saves them in
ONE transaction, each command's rows under a savepoint of its own. A command whose rows break a
constraint (its optimistic check: the unique originator_id + originator_version) is rolled back
alone and its caller gets the IntegrityError the plain insert raises, so `run_once` reloads and
decides again; the others commit. Callers that arrive while a group commits queue for the next.
Every caller returns only after its group's commit, in its own thread, so the application's
listeners hear its events there (with its request's context), once, and never a rolled-back
command's.

A lone command is inserted exactly as without grouping. If the group's insert fails for another
reason than the database being unreachable (those errors go to every member, whose recorder
retries as it would alone), each member is inserted alone, so one bad command cannot fail the
others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)

InsertOne = Callable[[Sequence[StoredEvent]], Sequence[int] | None]
# Each group member's notification ids, or None for a member rolled back to its savepoint.
InsertMany = Callable[[Sequence[Sequence[StoredEvent]]], list[Sequence[int] | None]]


@dataclass
class _Member:
    events: Sequence[StoredEvent]
    ids: Sequence[int] | None = None
    error: BaseException | None = None
    ok: bool = False  # its ids are set
    done: bool = field(default=False)

    def result(self) -> Sequence[int] | None:
        if self.error is not None:
            raise self.error
        return self.ids


class GroupCommit:
    """Gathers concurrent inserts into shared transactions (see the module's docstring)."""

    def __init__(
        self, insert_one: InsertOne, insert_many: InsertMany, *, max_wait: float, max_size: int
    ) -> None:
        if max_size < 1 or max_wait < 0:
            raise ValueError("a group holds at least one command and waits >= 0 seconds")
        self._insert_one = insert_one
        self._insert_many = insert_many
        self.max_wait = max_wait
        self.max_size = max_size
        self._cond = threading.Condition()
        self._queue: list[_Member] = []
        self._leading = False
        self._expect = 1  # how many the last group had: worth waiting for while fewer queue
        # What was committed (read without the lock: figures for metrics and tests).
        self.transactions = 0
        self.commands = 0

    def queued(self) -> tuple[bool, int]:
        """(a group is committing now, how many commands wait for the next one)."""
        with self._cond:
            return self._leading, len(self._queue)

    def put(self, events: Sequence[StoredEvent]) -> Sequence[int] | None:
        """Insert `events` (one command's) in the next group; their notification ids once the
        group has committed, or the error that refused them."""
        member = _Member(events)
        with self._cond:
            self._queue.append(member)
            self._cond.notify_all()  # a gathering leader counts its company
            while not member.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch = self._gather()
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        return member.result()

    def _gather(self) -> list[_Member]:
        """Called with the lock held: wait (bounded) for the company expected, take a group."""
        want = min(self.max_size, self._expect)
        if len(self._queue) < want and self.max_wait > 0:
            ends = time.monotonic() + self.max_wait
            while len(self._queue) < want:
                left = ends - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        batch = self._queue[: self.max_size]
        del self._queue[: self.max_size]
        self._expect = max(len(batch), 1)
        return batch

    def _commit(self, batch: list[_Member]) -> None:
        try:
            if len(batch) == 1:
                self._alone(batch[0])
                self.transactions += 1
                return
            try:
                results = self._insert_many([m.events for m in batch])
            except (OperationalError, InterfaceError) as e:  # the store: each member retries
                for m in batch:
                    m.error = e
                return
            except Exception:  # noqa: BLE001 - one bad member: each is inserted alone
                for m in batch:
                    self._alone(m)
                self.transactions += len(batch)
                return
            for m, ids in zip(batch, results, strict=True):
                if ids is None:
                    m.error = IntegrityError(
                        "a command's events conflict with stored events (rolled back alone)"
                    )
                else:
                    m.ids, m.ok = ids, True
            self.transactions += 1
        finally:
            for m in batch:
                if not m.ok and m.error is None:
                    m.error = RuntimeError("the group commit was interrupted")
                m.done = True
            self.commands += len(batch)

    def _alone(self, member: _Member) -> None:
        try:
            member.ids = self._insert_one(member.events)
            member.ok = True
        except Exception as e:  # noqa: BLE001 - handed to the member's own thread
            member.error = e
