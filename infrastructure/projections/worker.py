"""The projection worker (DESIGN.md 4): batched, exactly-once, one active runner per projection.

Each batch reads the next page of the notification log after the tracked position, folds it
into the view and advances the tracking row in the same transaction. The tracking update only
moves forward, so a batch that another runner already applied rolls back whole.

Poison isolation: a batch whose apply raises is bisected inside the same transaction (each try
in a savepoint), the good events applied, and each event that fails alone dead-lettered with its
error; the position then moves past it. `classify_failure` decides which errors are the event's
fault (poison: bisect) and which are the world's (transient: the whole batch is retried later).
A projection whose state lives outside the transaction (the seal) sets `isolate_poison = False`.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import psycopg
from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import TopicError, resolve_topic
from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from application.invoices.ledger import InvoiceLedger
from infrastructure.projections.decoding import EventDecoder
from infrastructure.store.db_outage import is_outage
from infrastructure.store.tables import projection_dead_letters, tracking_table

log = logging.getLogger("fapiao.worker")


class Projection(Protocol):
    name: str
    topics: frozenset[str]  # stored topics it folds; other events are not even decoded
    # (a projection with `raw = True` gets stored rows instead, every one: the seal)

    def handles(self, event: object) -> bool: ...

    def apply_batch(
        self, conn: Connection, items: list[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]: ...

    def reset(self, conn: Connection) -> None: ...


class Leadership(Protocol):
    """Who may run a projection: exactly one holder at a time, across processes."""

    def try_acquire(self) -> bool: ...

    def wait_for_events(self, timeout: float) -> bool:
        """Block until a save is signalled (True) or `timeout` passes (False)."""
        ...

    def still_held(self) -> bool:
        """Whether this runner still holds it (asked before each batch commits)."""
        ...

    def release(self) -> None: ...


class StoredNote(NamedTuple):
    """One stored event as the log holds it (what a dead letter names)."""

    id: int
    originator_id: Any
    originator_version: int
    topic: str
    state: bytes


class TrackingConflictError(Exception):
    """Another runner advanced the projection first; this batch was rolled back."""


class LeadershipLostError(TrackingConflictError):
    """This runner no longer holds its projection's lock: its batch was rolled back (fencing:
    a stale leader never writes beside its successor)."""


POISON = "poison"
TRANSIENT = "transient"


class SuspectedPoisonError(Exception):
    """An event failed alone, but not yet `poison_tries` times the same way: the batch is rolled
    back and retried (after the bounded backoff) before the event is dead-lettered."""


def classify_failure(error: BaseException) -> str:
    """Is this failure the event's fault (POISON: it will fail again, set it aside) or the
    world's (TRANSIENT: a lost connection, a lock or statement timeout; retry the batch)?

    Database errors the driver reports as operational or interface errors (connections,
    timeouts, serialization and deadlock), and our own tracking conflicts, are transient;
    everything else (data errors, integrity errors, errors raised while folding) is poison."""
    if isinstance(error, TrackingConflictError | SuspectedPoisonError):
        return TRANSIENT
    if isinstance(error, TimeoutError | ConnectionError):
        return TRANSIENT
    if is_outage(error):  # a pool timeout, the library's wrapped driver errors, SQLite busy
        return TRANSIENT
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return TRANSIENT
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError):
        return TRANSIENT
    if isinstance(error, LibraryOperationalError | LibraryInterfaceError):  # the event store's
        return TRANSIENT
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return TRANSIENT
    return POISON


class ProgressBoard:
    """In-process notice board: workers post positions, readers waiting on them wake at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._wakers: list[threading.Event] = []

    def posted(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def new_waker(self) -> threading.Event:
        event = threading.Event()
        self._wakers.append(event)
        return event

    def saved(self, _position: int) -> None:
        """Called after every save in this process: wake the local workers."""
        for event in self._wakers:
            event.set()


@dataclass
class WorkerState:
    role: str = "starting"  # starting | active | standby | stopped
    last_error: str | None = None
    advanced_at: float | None = None  # unix time this runner last moved the position
    retries: int = 0  # failures it recovered from (metrics)
    bisections: int = 0  # batches split to isolate a poison event
    fenced: int = 0  # batches rolled back because the lock was no longer held
    poison_retries: int = 0  # batches retried because one event failed alone, not yet N times


class ProjectionWorker:
    def __init__(
        self,
        ledger: InvoiceLedger,
        engine: Engine,
        read_engine: Engine,
        projection: Projection,
        leadership: Callable[[], Leadership],
        board: ProgressBoard,
        batch_size: int = 500,
        poll_seconds: float = 2.0,
        linger_seconds: float = 0.0,
        poison_tries: int = 3,
        max_backoff: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.engine = engine  # writes (BEGIN IMMEDIATE on SQLite)
        self.read_engine = read_engine
        self.projection = projection
        self.leadership = leadership
        self.board = board
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        # After a wake-up, wait this long for more events: fewer, larger batches, and the
        # commands get SQLite's one writer in between (the worker yields to them).
        self.linger_seconds = linger_seconds
        # An event is dead-lettered only after failing alone this many times the same way;
        # transient failures are retried after a backoff doubling to `max_backoff` seconds.
        self.poison_tries = poison_tries
        self.max_backoff = max_backoff
        self._strikes: dict[tuple[int, str], int] = {}
        self._leadership: Leadership | None = None  # held by run() while active
        self.tracking = tracking_table(projection.name)
        self.app_name = ledger.name
        self.state = WorkerState()
        self._topics_seen: dict[str, bool] = {}
        self.decoder = EventDecoder(ledger.mapper)
        self._ahead: Page | None = None  # the next page, fetched during the last batch
        recorder = ledger.recorder
        self._events_sql: str | None = None
        if isinstance(recorder, PostgresApplicationRecorder) and (
            read_engine.dialect.name == "postgresql"
        ):
            table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
            self._events_sql = (  # the recorder's own table name
                "SELECT notification_id AS id, originator_id, originator_version, topic, state "  # noqa: S608
                f"FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )

    # ---- positions ---------------------------------------------------------------------------

    def position(self, conn: Connection | None = None) -> int:
        query = select(self.tracking.c.notification_id).where(
            self.tracking.c.application_name == self.app_name
        )
        if conn is not None:
            return int(conn.execute(query).scalar() or 0)
        with self.read_engine.connect() as c:
            return int(c.execute(query).scalar() or 0)

    def head(self) -> int:
        return int(self.ledger.recorder.max_notification_id() or 0)

    def _advance(self, conn: Connection, position: int) -> None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        t = self.tracking
        stmt = insert(t).values(application_name=self.app_name, notification_id=position)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.application_name],
            set_={"notification_id": stmt.excluded.notification_id},
            where=t.c.notification_id < stmt.excluded.notification_id,
        ).returning(t.c.notification_id)
        if conn.execute(stmt).first() is None:
            raise TrackingConflictError(f"{self.projection.name} is already past {position}")

    # ---- one batch ---------------------------------------------------------------------------

    def process_batch(self, ahead: Callable[[int], None] | None = None) -> int:
        """Apply the next page of events; returns how many notifications it consumed.

        `ahead(last)` (catch-up) is called once the page is decoded, before its transaction:
        it may fetch the page after `last` meanwhile and leave it in `self._ahead`, which the
        next batch uses if it starts there (a page read early is the page read then: the log
        only grows at its end, one writer at a time under the table lock)."""
        start = self.position()
        if getattr(self.projection, "raw", False):
            return self._process_raw(start)
        page, self._ahead = self._ahead, None
        if page is None or page.start != start:
            page = self._fetch(start)
        if not page.size:
            return 0
        if ahead is not None:
            ahead(page.last)
        dead = list(page.dead)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Each batch's statements planned for its own ids and the table as it is now:
                # psycopg prepares a statement on its fifth run, and the generic plan the
                # server then caches was made for the table a rebuild had just emptied.
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            dead.extend(self._apply_isolating(conn, page.items))
            if dead:
                self._dead_letter(conn, dead)
            self._advance(conn, page.last)
            self._fence()
        self._committed()
        self.state.advanced_at = time.time()
        self.board.posted()
        return page.size

    def _committed(self) -> None:
        """A projection may act once its batch is durable (`committed()`, optional): the
        alerts wake the webhook deliverer."""
        committed = getattr(self.projection, "committed", None)
        if committed is not None:
            committed()

    def _fetch(self, start: int) -> Page:
        """The page after `start`, decoded: the events the projection handles, and the
        notifications to dead-letter (unknown topics, undecodable states)."""
        notes = self._read(start)
        items: list[tuple[int, Any]] = []
        dead: list[tuple[int, Any, Exception]] = []
        topics = self.projection.topics
        decode = self.decoder.decode
        handles = self.projection.handles
        for n in notes:
            if n.topic not in topics:
                if not self._known(n.topic):  # no code knows it: that is worth a dead letter
                    dead.append((n.id, n, LookupError(f"unknown topic {n.topic!r}")))
                continue
            try:
                event = decode(n.originator_id, n.originator_version, n.topic, n.state)
            except Exception as e:  # noqa: BLE001 - undecodable: dead-letter and go on
                dead.append((n.id, n, e))
                continue
            if handles(event):
                items.append((n.id, event))
        return Page(start, notes[-1].id if notes else start, len(notes), items, dead)

    def _read(self, start: int) -> Sequence[Any]:
        """The next page of the log after `start`, as stored (rows with the fields of a
        StoredNote). PostgreSQL: one lean query through this worker's engine; otherwise the
        library's recorder."""
        if self._events_sql is not None:
            with self.read_engine.connect() as conn:
                return conn.exec_driver_sql(self._events_sql, (start, self.batch_size)).all()
        return [
            StoredNote(n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in self.ledger.recorder.select_notifications(
                start=start, limit=self.batch_size, inclusive_of_start=False
            )
        ]

    def _fence(self) -> None:
        """Before the batch commits: the runner loop's lock must still be ours."""
        leadership = self._leadership
        if leadership is not None and not leadership.still_held():
            self.state.fenced += 1
            raise LeadershipLostError(
                f"projection {self.projection.name}: lock lost; batch rolled back"
            )

    def _process_raw(self, start: int) -> int:
        """For projections over stored rows (the seal): no decoding, rows as stored."""
        rows = self.ledger.event_log.select_rows(start, self.batch_size)
        if not rows:
            return 0
        with self.engine.begin() as conn:
            dead = self._apply_isolating(conn, [(r.position, r) for r in rows])
            if dead:
                self._dead_letter(conn, dead)
            self._advance(conn, rows[-1].position)
            self._fence()
        self._committed()
        self.state.advanced_at = time.time()
        self.board.posted()
        return len(rows)

    def _apply_isolating(
        self, conn: Connection, items: list[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        """Apply `items`; if that raises a poison failure, bisect in savepoints so the good
        events are applied and each bad one comes back (with its error) to be dead-lettered."""
        if not getattr(self.projection, "isolate_poison", True):
            return self.projection.apply_batch(conn, items)
        if not items:
            return []
        try:
            with conn.begin_nested():
                return self.projection.apply_batch(conn, items)
        except Exception as e:
            if classify_failure(e) != POISON:
                raise
            if len(items) == 1:
                position, item = items[0]
                key = (position, _describe(e))
                strikes = self._strikes.get(key, 0) + 1
                if strikes < self.poison_tries:  # perhaps the world's fault after all: retry
                    self._strikes = {key: strikes}  # only the event being retried is counted
                    self.state.poison_retries += 1
                    raise SuspectedPoisonError(
                        f"position {position} failed alone ({strikes} of {self.poison_tries} "
                        f"tries): {key[1]}"
                    ) from e
                self._strikes.pop(key, None)
                return [(position, item, e)]
            self.state.bisections += 1
            middle = len(items) // 2
            return self._apply_isolating(conn, items[:middle]) + self._apply_isolating(
                conn, items[middle:]
            )

    def _known(self, topic: str) -> bool:
        if topic not in self._topics_seen:
            try:
                resolve_topic(topic)
                self._topics_seen[topic] = True
            except (TopicError, ImportError, AttributeError):
                self._topics_seen[topic] = False
        return self._topics_seen[topic]

    def _dead_letter(self, conn: Connection, dead: list[tuple[int, Any, Exception]]) -> None:
        now = datetime.now(UTC)
        rows = []
        for position, item, error in dead:
            log.error(
                "projection %s: dead-lettered position %s: %s",
                self.projection.name,
                position,
                _describe(error),
            )
            rows.append(
                {
                    "projection": self.projection.name,
                    "position": position,
                    "originator_id": str(item.originator_id),
                    "originator_version": item.originator_version,
                    "topic": getattr(item, "topic", type(item).__name__),
                    "error": _describe(error),
                    "failed_at": now,
                }
            )
        conn.execute(projection_dead_letters.insert(), rows)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply every event up to the current head; returns how many were consumed.

        While a batch's transaction runs on the server, the next page is read and decoded in
        a helper thread (PostgreSQL: on its own connection), so the two overlap."""
        consumed = 0
        head = self.head()
        overlap = self._events_sql is not None and not getattr(self.projection, "raw", False)
        with (
            _fewer_collections(),
            ThreadPoolExecutor(1, thread_name_prefix=f"fetch-{self.projection.name}") as pool,
        ):
            pending: list[Future[Page]] = []

            def ahead(last: int) -> None:
                pending.append(pool.submit(self._fetch, last))

            try:
                while True:
                    try:
                        n = self.process_batch(ahead if overlap else None)
                    except SuspectedPoisonError:  # again now; the Nth time dead-letters
                        continue
                    finally:
                        self._ahead = _page_of(pending.pop()) if pending else None
                    consumed += n
                    if progress:
                        progress(self.position(), max(head, self.position()))
                    if n == 0 or n < self.batch_size and self.position() >= head:
                        return consumed
            finally:
                self._ahead = None

    def reset(self) -> None:
        """Empty the view, its tracking row and its dead letters, in one transaction."""
        with self.engine.begin() as conn:
            self.projection.reset(conn)
            conn.execute(
                delete(self.tracking).where(self.tracking.c.application_name == self.app_name)
            )
            conn.execute(
                delete(projection_dead_letters).where(
                    projection_dead_letters.c.projection == self.projection.name
                )
            )

    def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest events this projection set aside, newest first, with their errors."""
        d = projection_dead_letters.c
        query = (
            select(d.position, d.topic, d.originator_id, d.error, d.failed_at)
            .where(d.projection == self.projection.name)
            .order_by(d.position.desc())
            .limit(limit)
        )
        with self.read_engine.connect() as conn:
            return [
                {
                    "position": int(r.position),
                    "topic": str(r.topic),
                    "originator_id": str(r.originator_id),
                    "error": str(r.error),
                    "failed_at": r.failed_at.isoformat(),
                }
                for r in conn.execute(query)
            ]

    def replay_dead_letters(self, attempts: int = 5) -> tuple[int, int]:
        """Apply this projection's dead letters again, oldest first, while its runner runs:
        each in a transaction that first locks the tracking row (so it and a batch of the
        runner take turns), its dead letter removed if it applies, its error updated if it
        fails again. Transient failures are retried (`attempts`). Returns (replayed, failing)."""
        d = projection_dead_letters.c
        with self.read_engine.connect() as conn:
            positions = [
                int(p)
                for p in conn.execute(
                    select(d.position)
                    .where(d.projection == self.projection.name)
                    .order_by(d.position)
                ).scalars()
            ]
        replayed = failing = 0
        for position in positions:
            for attempt in range(1, attempts + 1):
                try:
                    ok = self._replay_one(position)
                except Exception as e:
                    if classify_failure(e) == POISON or attempt == attempts:
                        raise
                    time.sleep(min(0.2 * 2 ** (attempt - 1), self.max_backoff))
                    continue
                replayed += ok
                failing += not ok
                break
        return replayed, failing

    def _replay_one(self, position: int) -> bool:
        d = projection_dead_letters.c
        mine = (d.projection == self.projection.name) & (d.position == position)
        if getattr(self.projection, "raw", False):
            found: list[Any] = [
                r
                for r in self.ledger.event_log.select_rows(position - 1, 1)
                if r.position == position
            ]
            item = found[0] if found else None
        else:
            notes = self.ledger.recorder.select_notifications(
                start=position, limit=1, inclusive_of_start=True
            )
            item = notes[0] if notes and notes[0].id == position else None
        with self.engine.begin() as conn:
            t = self.tracking.c
            conn.execute(  # take turns with the runner's batch (its commit updates this row)
                select(t.notification_id)
                .where(t.application_name == self.app_name)
                .with_for_update()
            )
            if item is None:  # the event is gone (a restored backup): nothing to apply
                conn.execute(delete(projection_dead_letters).where(mine))
                return True
            try:
                event = (
                    item
                    if getattr(self.projection, "raw", False)
                    else (self.ledger.mapper.to_domain_event(item))
                )
                with conn.begin_nested():
                    failed = (
                        self.projection.apply_batch(conn, [(position, event)])
                        if getattr(self.projection, "raw", False) or self.projection.handles(event)
                        else []
                    )
                error: Exception | None = failed[0][2] if failed else None
            except Exception as e:
                if classify_failure(e) != POISON:
                    raise
                error = e
            if error is not None:
                conn.execute(
                    update(projection_dead_letters)
                    .where(mine)
                    .values(error=_describe(error), failed_at=datetime.now(UTC))
                )
                return False
            conn.execute(delete(projection_dead_letters).where(mine))
        self._committed()
        self.board.posted()
        return True

    def dead_letter_count(self) -> int:
        with self.read_engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(projection_dead_letters)
                    .where(projection_dead_letters.c.projection == self.projection.name)
                ).scalar_one()
            )

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, standby_retry: float = 1.0) -> None:
        """Run until `stop` is set: lead if no one else does, else wait as a standby."""
        first_backoff = min(0.2, self.max_backoff)
        backoff = first_backoff
        while not stop.is_set():
            leadership = self.leadership()
            try:
                if not leadership.try_acquire():
                    if self.state.role != "standby":
                        log.info(
                            "projection %s: another runner is active; standing by",
                            self.projection.name,
                        )
                    self.state.role = "standby"
                    leadership.release()
                    stop.wait(standby_retry)
                    continue
                self.state.role = "active"
                self._leadership = leadership
                log.info("projection %s: active", self.projection.name)
                while not stop.is_set():
                    if self.process_batch() < self.batch_size:
                        self._idle(leadership, stop)
                    backoff = first_backoff
            except TrackingConflictError as e:
                log.warning("%s", e)
            except Exception as e:  # noqa: BLE001 - the supervisor keeps the worker alive
                self.state.last_error = _describe(e)
                self.state.retries += 1
                log.error(  # no SQL parameters or failing rows in the log (they hold data)
                    "projection %s failed (%s); retrying in %.1fs",
                    self.projection.name,
                    self.state.last_error,
                    backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self._leadership = None
                leadership.release()
        self.state.role = "stopped"

    def _idle(self, leadership: Leadership, stop: threading.Event) -> None:
        """Sleep until a wake-up, the re-poll timer, or stop; in short slices so stop is prompt."""
        deadline = time.monotonic() + self.poll_seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if leadership.wait_for_events(min(remaining, 0.5)):
                if self.linger_seconds:
                    stop.wait(self.linger_seconds)
                return


_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None
CATCH_UP_GC_THRESHOLD = 50_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """While any catch-up runs in this process, the cyclic collector's young generation is
    collected every 50,000 surviving allocations instead of every 700: a catch-up keeps pages
    of events alive, and each collection of their generations costs it a third of its
    decoding time. Nothing is left uncollected (reference counting frees as before; cycles
    wait a little longer), and the last catch-up to finish puts the thresholds back."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(_gc_saved[0], CATCH_UP_GC_THRESHOLD), *_gc_saved[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                _gc_saved = None


class Page(NamedTuple):
    """A page of the log after `start`, decoded (`last`: its last position)."""

    start: int
    last: int
    size: int  # notifications in it
    items: list[tuple[int, Any]]
    dead: list[tuple[int, Any, Exception]]


def _page_of(future: Future[Page]) -> Page | None:
    """The page a helper fetched, or None if fetching failed (the batch reads it itself)."""
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - read again in the batch, which reports the failure
        return None


def _describe(error: Exception) -> str:
    """The error as stored with its dead letter: its kind and first line, bounded, with no SQL
    statement or parameters (those can carry what the event carried)."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    first = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:500]


def wait_for_position(
    worker: ProjectionWorker, position: int, timeout: float, board: ProgressBoard
) -> int:
    """Block until the worker's projection has applied `position` (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    reached = worker.position()
    while reached < position:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        board.wait(min(remaining, 0.05))
        reached = worker.position()
    return reached
