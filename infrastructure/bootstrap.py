"""The composition root: the only place that builds concrete objects (STYLE.md 2)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, text, update
from sqlalchemy.exc import DBAPIError

from application.evidence.event_catalog import EventCatalog
from application.invoices.ledger import InvoiceLedger
from application.monitoring.ack_ticker import AckTimerTicker
from application.monitoring.policy_service import PolicyService
from application.monitoring.reconciliation_service import ReconciliationService
from application.ports import AttachmentStore, Clock
from application.remedies.case_ticker import CaseTicker
from application.remedies.complaint_service import ComplaintService
from application.remedies.lost_invoice_service import LostInvoiceService
from application.remedies.reentry_service import ReEntryService
from application.service_errors import ProjectionLagError, UnknownProjectionError
from domain.bounds import OutOfBoundsError
from domain.evidence.access_record import AccessRecord
from domain.evidence.checkpoint import NoteFormatError, check_key_name, check_origin
from domain.idempotency import CommandReceipt
from domain.invoices.invoice import Invoice
from domain.monitoring.reconciliation_run import ReconciliationRun
from domain.monitoring.tenant_policy import TenantPolicy
from domain.remedies.case_numbering import CaseNumbering
from domain.remedies.complaint import Complaint
from domain.remedies.lost_invoice import LostInvoiceCase
from domain.remedies.reentry_application import ReEntryApplication
from infrastructure.api_keys import ApiKeyStore
from infrastructure.clock import SystemClock
from infrastructure.evidence import fast_json
from infrastructure.evidence.access_log import AccessLog, AccessLogProjection
from infrastructure.evidence.anchors import Anchorer, parse_witnesses
from infrastructure.evidence.checkpoint_signer import CheckpointSigner
from infrastructure.evidence.merkle_log import MerkleLog, SealProjection
from infrastructure.happenings import log_happenings
from infrastructure.holiday_calendar import china_holidays
from infrastructure.metrics import Metrics, pool_numbers
from infrastructure.monitoring.callback_signatures import CallbackVerifier
from infrastructure.monitoring.reconciliation_store import SqlReconciliationStore
from infrastructure.monitoring.webhooks import AlertsProjection, WebhookService, queue_checkpoint
from infrastructure.outbound import OutboundGuard
from infrastructure.projections.ack_timers import AckTimersProjection, SqlTimerReader
from infrastructure.projections.cases import CasesProjection, SqlCaseReader
from infrastructure.projections.invoice_status import (
    InvoiceStatusProjection,
    SqlInvoiceStatusReader,
)
from infrastructure.projections.leadership import FileLeadership, PostgresLeadership
from infrastructure.projections.status_history import StatusHistoryProjection
from infrastructure.projections.streams import StreamsProjection
from infrastructure.projections.worker import (
    Leadership,
    ProgressBoard,
    Projection,
    ProjectionWorker,
    wait_for_position,
)
from infrastructure.remedies.attachment_store import FileAttachmentStore
from infrastructure.settings import Settings
from infrastructure.store.database import create_engine_for
from infrastructure.store.event_states import fast_state_encoder
from infrastructure.store.recorders import GroupingRecorder
from infrastructure.store.replica import Replica
from infrastructure.store.tables import readiness_probe

if TYPE_CHECKING:  # psycopg_pool is imported only where the app serves
    from infrastructure.projections.invoice_status_async import AsyncStatusReader

log = logging.getLogger("fapiao.services")


@dataclass(frozen=True)
class Reads:
    """The readers one request uses: the replica's, or the primary's when there is no replica,
    it is unreachable, or it has not replayed the position the request asked for."""

    reader: SqlInvoiceStatusReader
    timers: SqlTimerReader
    cases: SqlCaseReader
    source: str = "primary"  # primary | replica
    lag_ms: int | None = None  # the replica's replay lag, when there is one


@dataclass
class Services:
    settings: Settings
    ledger: InvoiceLedger
    engine: Engine
    write_engine: Engine
    reader: SqlInvoiceStatusReader
    keys: ApiKeyStore
    board: ProgressBoard
    workers: dict[str, ProjectionWorker]
    policies: PolicyService
    timers: SqlTimerReader
    ticker: AckTimerTicker
    reconciliation_store: SqlReconciliationStore
    reconciliation: ReconciliationService
    callbacks: CallbackVerifier
    webhooks: WebhookService
    attachments: AttachmentStore
    reentry: ReEntryService
    complaints: ComplaintService
    lost_invoices: LostInvoiceService
    cases: SqlCaseReader
    merkle: MerkleLog
    anchors: Anchorer
    access_log: AccessLog
    case_ticker: CaseTicker
    metrics: Metrics
    replica: Replica | None = None
    replica_reads: Reads | None = None
    # GET one invoice on the event loop (PostgreSQL, no replica, no tracing); the app's
    # lifespan sets and closes it
    fast_reader: AsyncStatusReader | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    # projection -> (position last seen, monotonic time it was first seen there)
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)
    _waiters: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(16)
    )

    def worker(self, name: str) -> ProjectionWorker:
        try:
            return self.workers[name]
        except KeyError:
            raise UnknownProjectionError(name, sorted(self.workers)) from None

    def start_workers(self) -> None:
        """Run every projection's loop in a daemon thread (embedded mode, `fapiao worker`)."""
        for worker in self.workers.values():
            thread = threading.Thread(
                target=worker.run,
                args=(self._stop,),
                name=f"projection-{worker.projection.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        for target, name in (
            (self._tick_forever, "ack-ticker"),
            (self._deliver_forever, "webhooks"),
            (self._anchor_forever, "anchors"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _deliver_forever(self) -> None:
        """Start what is due (without waiting for slow receivers), keep the claims in flight
        alive, and sleep until the next delivery is due (at most the poll interval), so the
        configured backoff is kept to the poll's granularity, not rounded up to it."""
        poll = self.settings.webhook_poll_seconds
        wait = poll
        while not self._stop.is_set():
            self.webhooks.changed.wait(wait)  # a failure recorded, or the next one due
            self.webhooks.changed.clear()
            if self._stop.is_set():
                return
            try:
                self.webhooks.dispatch()
                self.webhooks.heartbeat()
                wait = max(0.02, self.webhooks.seconds_to_next(poll))
            except Exception:  # noqa: BLE001 - keep delivering; the next round retries
                log.exception("webhook delivery failed; retrying")
                wait = poll

    def _anchor_forever(self) -> None:
        """Timestamp tokens and cosignatures for the signed checkpoints, off the sealing path."""
        while not self._stop.wait(self.settings.anchor_poll_seconds):
            try:
                self.anchor_round()
            except Exception:  # noqa: BLE001 - keep anchoring; the next round retries
                log.exception("anchoring checkpoints failed; retrying")

    def anchor_round(self) -> int:
        """One anchoring round, unless the sealer is catching up (more than
        FAPIAO_ANCHOR_YIELD_EVENTS behind the log): then anchors wait, so the sealer has the
        process (and the witnesses get the latest tree, not each one it passes). -1 if it
        waited, else how many anchors were kept."""
        seal = self.workers.get("seal")
        if seal is not None and seal.head() - seal.position() > self.settings.anchor_yield_events:
            return -1
        return self.anchors.run_once()

    def _tick_forever(self) -> None:
        while not self._stop.wait(self.settings.timer_tick_seconds):
            for ticker in (self.ticker, self.case_ticker):
                try:
                    ticker.tick()
                except Exception:  # noqa: BLE001 - keep ticking; the next tick retries
                    log.exception("%s failed; retrying next tick", type(ticker).__name__)

    def wait_for(self, projection: str, position: int, timeout: float) -> int:
        """Read-your-writes: wait (bounded in time and in the number of waiting requests)
        until `projection` has applied `position`. A position beyond the log's head is refused
        at once: no wait could reach it."""
        worker = self.worker(projection)
        reached = worker.position()
        if reached >= position:
            return reached
        head = worker.head()
        if position > head:
            raise OutOfBoundsError(
                "consistent_after", f"is beyond the log's head ({head})", "beyond_head"
            )
        if not self._waiters.acquire(blocking=False):  # every slot already waits: say so now
            raise ProjectionLagError(projection, position, reached)
        try:
            reached = wait_for_position(worker, position, timeout, self.board)
        finally:
            self._waiters.release()
        if reached < position:
            raise ProjectionLagError(projection, position, reached)
        return reached

    def reads(self, projection: str, position: int | None) -> Reads:
        """Where a list, history or queue read goes. With `position` (consistent_after) the
        primary's view is waited for first (bounded); the replica answers only once it has
        replayed that position too, else the primary does."""
        if position:
            self.wait_for(projection, position, self.settings.consistent_read_timeout)
        primary = Reads(self.reader, self.timers, self.cases)
        if self.replica is None or self.replica_reads is None:
            return primary
        try:
            lag = self.replica.lag_ms()
            worker = self.worker(projection)
            if position and self.replica.position(worker.tracking, worker.app_name) < position:
                return replace(primary, lag_ms=lag)
        except DBAPIError as e:
            log.warning("replica unreachable; reading from the primary: %s", type(e).__name__)
            return primary
        return replace(self.replica_reads, lag_ms=lag)

    def bring_up_to_date(self, name: str, timeout: float = 120.0) -> None:
        """Make projection `name` current with the log: catch up here if no runner is active,
        else wait for the one that is."""
        worker = self.worker(name)
        head = worker.head()
        if worker.position() >= head:
            return
        leadership = worker.leadership()
        try:
            if leadership.try_acquire():
                worker.catch_up()
                return
        finally:
            leadership.release()
        self.wait_for(name, head, timeout)

    def check_database(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_writes(self) -> str | None:
        """Why writes would fail now, or None: a write must commit (a one-row probe table),
        and on SQLite the disk must keep FAPIAO_MIN_FREE_DISK_MB free."""
        if not self.settings.is_postgres:
            free = shutil.disk_usage(self.settings.sqlite_path.parent).free // 2**20
            least = self.settings.min_free_disk_mb
            if free < least:
                return f"{free} MB free on the database's disk (under {least})"
        try:
            with self.write_engine.begin() as conn:
                conn.execute(
                    update(readiness_probe)
                    .where(readiness_probe.c.probe_id == 1)
                    .values(checked_at=datetime.now(UTC))
                )
        except Exception as e:  # noqa: BLE001 - readiness reports the kind, never raises
            return f"a write could not commit ({type(e).__name__})"
        return None

    def projection_status(self) -> list[dict[str, Any]]:
        head = int(self.ledger.recorder.max_notification_id() or 0)
        rows = []
        now = time.monotonic()
        for name, worker in self.workers.items():
            position = worker.position()
            lag = max(head - position, 0)
            seen = self._seen.get(name)
            if seen is None or seen[0] != position or lag == 0:
                seen = self._seen[name] = (position, now)
            still = now - seen[1]
            rows.append(
                {
                    "projection": name,
                    "position": position,
                    "head": head,
                    "lag": lag,
                    "dead_letters": worker.dead_letter_count(),
                    # failed batches retried by this process's runner (transient errors, and
                    # events that failed alone fewer than FAPIAO_PROJECTION_POISON_TRIES times)
                    "retries": worker.state.retries,
                    "poison_retries": worker.state.poison_retries,
                    "last_error": worker.state.last_error,
                    "active_runner": self.active_runner(name),
                    # behind the head and not moved for the configured time (seen from here)
                    "stalled": lag > 0 and still >= self.settings.projection_stall_seconds,
                    "unmoved_seconds": round(still, 1) if lag else 0.0,
                }
            )
        return rows

    def active_runner(self, name: str) -> str | None:
        if self.settings.is_postgres:
            pid = PostgresLeadership.holder_pid(_conninfo(self.settings), name)
            return None if pid is None else f"postgres backend pid {pid}"
        path = _lock_path(self.settings, name)
        return "a local process (file lock held)" if FileLeadership.is_held(path) else None

    def pool_usage(self) -> dict[str, tuple[int, int]]:
        """(checked out, held open) per connection pool: reads, writes, the event store."""
        usage = {
            "read": pool_numbers(self.engine.pool),
            "write": pool_numbers(self.write_engine.pool),
        }
        pool = getattr(getattr(self.ledger.recorder, "datastore", None), "pool", None)
        if pool is not None and hasattr(pool, "get_stats"):
            stats = pool.get_stats()
            held = int(stats.get("pool_size", 0))
            usage["events"] = (held - int(stats.get("pool_available", 0)), held)
        return usage

    def close(self) -> None:
        self._stop.set()
        self.webhooks.changed.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.webhooks.close()
        self.ledger.close()
        self.engine.dispose()
        self.write_engine.dispose()
        if self.replica is not None:
            self.replica.engine.dispose()


def event_catalog() -> EventCatalog:
    """Every stored event topic of the project (what a bundle verifier may decode)."""
    return EventCatalog.of(
        [
            Invoice,
            ReEntryApplication,
            Complaint,
            LostInvoiceCase,
            CaseNumbering,
            TenantPolicy,
            ReconciliationRun,
            CommandReceipt,
            AccessRecord,
        ]
    )


def _conninfo(settings: Settings) -> str:
    return settings.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _lock_path(settings: Settings, projection: str) -> Any:
    return settings.sqlite_path.with_name(f"{settings.sqlite_path.name}.{projection}.lock")


def build_services(settings: Settings | None = None, clock: Clock | None = None) -> Services:
    settings = settings or Settings()
    try:  # the origin names the log's signing keys too (<origin>/<key>): a key name's rules
        check_key_name(check_origin(settings.origin))
    except NoteFormatError as e:
        raise ValueError(f"FAPIAO_LOG_ORIGIN: {e}") from None
    ledger = InvoiceLedger(settings.eventsourcing_env(), clock or SystemClock())
    ledger.state_encoder = fast_state_encoder(ledger.mapper)
    fast_json.install()  # canonical JSON (leaves, bundles) by orjson: the same bytes, faster
    if settings.group_commit:
        cast(GroupingRecorder, ledger.recorder).enable_group_commit(
            settings.group_commit_wait_ms / 1000, settings.group_commit_max_size
        )
    engine = create_engine_for(settings)
    write_engine = create_engine_for(settings, immediate=True)
    board = ProgressBoard()
    ledger.on_saved(board.saved)
    ledger.on_events(log_happenings)
    metrics = Metrics()
    workers: dict[str, ProjectionWorker] = {}
    signer = CheckpointSigner(
        settings.keys_dir or settings.data_dir / "keys",
        settings.origin,
        create_if_missing=settings.environment != "production",
        env_seed=settings.signing_key.get_secret_value() if settings.signing_key else None,
    )
    deliveries_due = threading.Event()  # alerts queued: the webhook deliverer wakes
    projections: list[Projection] = [
        InvoiceStatusProjection(),
        AckTimersProjection(),
        AlertsProjection(ledger, wake=deliveries_due.set),
        CasesProjection(),
        StatusHistoryProjection(ledger),
        StreamsProjection(),
        SealProjection(
            signer, settings.checkpoint_every, timedelta(minutes=settings.checkpoint_minutes)
        ),
        AccessLogProjection(),
    ]
    for projection in projections:
        wake = board.new_waker()

        def leadership(name: str = projection.name, wake: threading.Event = wake) -> Leadership:
            if settings.is_postgres:
                return PostgresLeadership(_conninfo(settings), name, "ledger_events")
            return FileLeadership(_lock_path(settings, name), wake)

        workers[projection.name] = ProjectionWorker(
            ledger,
            write_engine,
            engine,
            projection,
            leadership,
            board,
            batch_size=settings.projection_batch_size,
            poll_seconds=settings.projection_poll_seconds,
            linger_seconds=settings.linger_seconds,
            poison_tries=settings.projection_poison_tries,
            max_backoff=settings.projection_max_backoff_seconds,
        )
    policies = PolicyService(ledger, china_holidays())
    timers = SqlTimerReader(engine)
    store = SqlReconciliationStore(engine, write_engine)
    reentry = ReEntryService(ledger, policies.review_days, policies.working_calendar)
    complaints = ComplaintService(ledger)
    case_reader = SqlCaseReader(engine)
    holder: list[Services] = []
    reconciliation = ReconciliationService(
        ledger,
        store,
        lambda: holder[0].bring_up_to_date("invoice_status"),
        metrics.observe_reconciliation,
    )
    merkle = MerkleLog(engine, write_engine, signer)
    anchors = Anchorer.from_files(
        settings.tsa_ca_file.read_bytes() if settings.tsa_ca_file else None,
        engine=engine,
        write_engine=write_engine,
        merkle=merkle,
        guard=OutboundGuard.from_setting(settings.outbound_allow),
        tsa_urls=settings.tsa_list,
        witnesses=parse_witnesses(
            settings.witnesses, OutboundGuard.from_setting(settings.outbound_allow)
        ),
        quorum=settings.witness_quorum,
        backoff_seconds=settings.anchor_backoff_seconds,
        timeout=settings.anchor_timeout_seconds,
        announce=queue_checkpoint,
    )
    services = Services(
        attachments=FileAttachmentStore(
            settings.attachments_dir or settings.data_dir / "attachments",
            settings.attachment_limit_mb * 1024 * 1024,
        ),
        reentry=reentry,
        complaints=complaints,
        lost_invoices=LostInvoiceService(ledger),
        cases=case_reader,
        merkle=merkle,
        anchors=anchors,
        access_log=AccessLog(ledger, engine, lambda: holder[0].bring_up_to_date("access_log")),
        case_ticker=CaseTicker(ledger.clock.now, case_reader, reentry, complaints),
        callbacks=CallbackVerifier(engine, write_engine),
        webhooks=WebhookService(
            engine,
            write_engine,
            ledger.clock,
            settings.webhook_max_attempts,
            timedelta(seconds=settings.webhook_backoff_seconds),
            timeout=settings.webhook_timeout_seconds,
            guard=OutboundGuard.from_setting(settings.outbound_allow),
            max_delay=timedelta(seconds=settings.webhook_backoff_max_seconds),
            changed=deliveries_due,
        ),
        reconciliation_store=store,
        reconciliation=reconciliation,
        policies=policies,
        timers=timers,
        ticker=AckTimerTicker(ledger, timers, policies),
        settings=settings,
        ledger=ledger,
        engine=engine,
        write_engine=write_engine,
        reader=SqlInvoiceStatusReader(engine),
        keys=ApiKeyStore(engine, write_engine, settings.key_cache_seconds),
        board=board,
        workers=workers,
        metrics=metrics,
    )
    if settings.read_url is not None:
        replica_engine = create_engine_for(settings, url=settings.read_url)
        services.replica = Replica(replica_engine)
        services.replica_reads = Reads(
            SqlInvoiceStatusReader(replica_engine),
            SqlTimerReader(replica_engine),
            SqlCaseReader(replica_engine),
            source="replica",
        )
    services._waiters = threading.BoundedSemaphore(settings.consistent_read_max_waiters)
    holder.append(services)
    metrics.watch(services)
    return services


class Cells:
    """The services of every database this process serves: FAPIAO_DATABASE_URL's first, then
    one per other database of FAPIAO_TENANT_DATABASES (a cell: its own event log, lock, seal
    and projections). Requests are routed to their tenant's cell."""

    def __init__(self, cells: list[Services]) -> None:
        self.cells = cells

    @property
    def default(self) -> Services:
        return self.cells[0]

    @property
    def routed(self) -> bool:
        return len(self.cells) > 1

    def for_tenant(self, tenant_id: str) -> Services:
        url = self.default.settings.for_tenant(tenant_id).database_url
        return next((c for c in self.cells if c.settings.database_url == url), self.default)

    def for_key(self, secret: str) -> Services:
        """The cell whose key store knows the key and holds its tenant (else the default)."""
        for cell in self.cells:
            principal = cell.keys.authenticate(secret)
            if principal is not None and self.for_tenant(principal.tenant_id) is cell:
                return cell
        return self.default

    def start_workers(self) -> None:
        for cell in self.cells:
            cell.start_workers()

    def close(self) -> None:
        for cell in self.cells:
            cell.close()


def build_cells(settings: Settings, clock: Clock | None = None) -> Cells:
    return Cells([build_services(cell, clock) for cell in settings.cells()])


def key_cell(settings: Settings, secret: str) -> Settings | None:
    """For the CLI: which database's key store knows `secret` (with its tenant routed there)."""
    for cell in settings.cells():
        engine = create_engine_for(cell)
        try:
            principal = ApiKeyStore(engine, engine).authenticate(secret)
        except DBAPIError:
            principal = None  # not migrated (yet): it knows no key
        finally:
            engine.dispose()
        if principal is not None:
            if settings.for_tenant(principal.tenant_id).database_url == cell.database_url:
                return cell
    return None
