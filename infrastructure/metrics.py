"""Prometheus metrics: what an operator alerts on, in the text format at `/metrics` (and on
`fapiao worker --metrics-port`).

Two kinds of family. Counted in this process as things happen: HTTP requests (by route
template, method and status, with a latency histogram), projection retries, reconciliation rows
and seconds. Read from the database at scrape time, so every process reports the same numbers
whichever one runs the worker: per-projection position, head, lag and dead letters (the very
rows `fapiao projections status` prints), timers pending and overdue, webhook deliveries by
status and their attempts, checkpoint size, age and unsigned events, and the pools in use.
The database-backed families are read in a background thread within a time budget
(COLLECT_TIMEOUT): a part that fails or does not answer in time (the database down) is skipped
and counted in `fapiao_metrics_collect_errors` (by part), so a scrape always answers promptly
with what it could read; while a stuck read is still running, later scrapes skip the database.
Each process has its own registry (no globals), so tests and several ledgers in one process
never mix their numbers. Under `fapiao serve --workers N` the event-counted families are
shared instead: with PROMETHEUS_MULTIPROC_DIR set (serve sets it to a fresh folder of its own
before the workers start, and removes it when they stop), every process counts into its own
files there and a scrape of any of them sums all of them (prometheus_client's multiprocess
mode; the last reconciliation's rate is the most recent one written), beside the
database-backed families it reads itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services

log = logging.getLogger("fapiao.metrics")
COLLECT_TIMEOUT = 3.0  # seconds a scrape waits for the database-backed families, in all
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The process's registry and its event-driven families."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # what a scrape of this process renders
        counted = self.registry
        self.shared_dir = os.environ.get(SHARED_DIR_ENV) or None
        if self.shared_dir is not None:
            # Counted into this process's files in the shared folder (prometheus_client writes
            # there by itself once the variable is set) and read back, summed over every
            # process, by the collector; the families' own registry is never rendered.
            counted = CollectorRegistry()
            MultiProcessCollector(self.registry, path=self.shared_dir)
        self.http_requests = Counter(
            "fapiao_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=counted,
        )
        self.http_latency = Histogram(
            "fapiao_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=counted,
        )
        self.reconciliation_rows = Counter(
            "fapiao_reconciliation_rows",
            "Platform export rows reconciled by this server's processes",
            registry=counted,
        )
        self.reconciliation_seconds = Counter(
            "fapiao_reconciliation_seconds",
            "Time spent reconciling (rows / seconds = rows per second)",
            registry=counted,
        )
        self.reconciliation_rate = Gauge(
            "fapiao_reconciliation_last_rows_per_second",
            "Rows per second of the last reconciliation run",
            multiprocess_mode="mostrecent",
            registry=counted,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_latency.labels(route, method).observe(seconds)

    def observe_reconciliation(self, rows: int, seconds: float) -> None:
        self.reconciliation_rows.inc(rows)
        self.reconciliation_seconds.inc(seconds)
        if seconds > 0:
            self.reconciliation_rate.set(rows / seconds)

    def watch(self, services: Services) -> None:
        """Add the families read from the store at scrape time."""
        self.registry.register(StoreCollector(services))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class AdvanceClock:
    """Seconds since each projection's position last moved, as seen by this process: from
    the worker itself when it runs here, else from the positions seen at earlier scrapes."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def seconds_since(self, name: str, position: int, advanced_at: float | None) -> float:
        now = time.time()
        last = self._seen.get(name)
        if last is None or last[0] != position:
            self._seen[name] = last = (position, now)
        changed = last[1] if advanced_at is None else max(advanced_at, last[1])
        return max(now - changed, 0.0)


class StoreCollector(Collector):
    """Families computed at scrape time from the database (and the local workers' state)."""

    def __init__(self, services: Services, timeout: float = COLLECT_TIMEOUT) -> None:
        self.services = services
        self.clock = AdvanceClock()
        self.errors: dict[str, int] = {}  # parts skipped, counted here so a scrape shows its own
        self.timeout = timeout
        self._reading: threading.Thread | None = None

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to describe ahead

    def collect(self) -> Iterator[Metric]:
        parts = {
            "projections": self._projections,
            "timers": self._timers,
            "webhooks": self._webhooks,
            "checkpoints": self._checkpoints,
        }
        read: dict[str, list[Metric]] = {}
        if self._reading is None or not self._reading.is_alive():
            # a daemon thread: one stuck on a dead database never holds the process's exit
            self._reading = threading.Thread(
                target=self._read, args=(parts, read), name="metrics-collect", daemon=True
            )
            self._reading.start()
            self._reading.join(self.timeout)
        done = dict(read)  # what was read in time; a late part is not reported this scrape
        for name in parts:
            if name in done:
                yield from done[name]
            else:
                self.errors[name] = self.errors.get(name, 0) + 1
        errors = CounterMetricFamily(
            "fapiao_metrics_collect_errors",
            "Scrapes that skipped a database-backed part (it failed or timed out), by part",
            labels=["part"],
        )
        for name in parts:
            errors.add_metric([name], self.errors.get(name, 0))
        yield errors
        yield from self._pools()
        yield from self._group_commit()

    @staticmethod
    def _read(parts: dict[str, Any], read: dict[str, list[Metric]]) -> None:
        for name, part in parts.items():
            try:
                read[name] = list(part())
            except Exception:  # noqa: BLE001 - a scrape reports what it can read
                log.exception("metrics: %s could not be read", name)

    def _projections(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(f"fapiao_projection_{name}", text, labels=["projection"])
            for name, text in (
                ("position", "Last log position the projection has applied"),
                ("head", "Last log position in the event store"),
                ("lag", "Events the projection has still to apply (head - position)"),
                ("dead_letters", "Events the projection could not apply, set aside"),
                ("seconds_since_advance", "Seconds since the projection's position last moved"),
            )
        }
        retries = CounterMetricFamily(
            "fapiao_projection_retries",
            "Times this process's runner of the projection failed and retried",
            labels=["projection"],
        )
        for row in self.services.projection_status():
            name = row["projection"]
            for field in ("position", "head", "lag", "dead_letters"):
                families[field].add_metric([name], row[field])
            state = self.services.workers[name].state
            since = self.clock.seconds_since(name, row["position"], state.advanced_at)
            families["seconds_since_advance"].add_metric([name], since)
            retries.add_metric([name], state.retries)
        yield from families.values()
        yield retries

    def _timers(self) -> Iterator[Metric]:
        now = self.services.ledger.clock.now()
        pending = GaugeMetricFamily(
            "fapiao_timers_pending", "Deadlines being watched, by kind", labels=["kind"]
        )
        overdue = GaugeMetricFamily(
            "fapiao_timers_overdue",
            "Deadlines past due that no ticker has fired yet, by kind",
            labels=["kind"],
        )
        counts = {"acknowledgement": self.services.timers.counts(now)}
        counts.update(self.services.cases.deadline_counts(now))
        for kind, (waiting, late) in sorted(counts.items()):
            pending.add_metric([kind], waiting)
            overdue.add_metric([kind], late)
        yield pending
        yield overdue

    def _webhooks(self) -> Iterator[Metric]:
        stats = self.services.webhooks.stats()
        deliveries = GaugeMetricFamily(
            "fapiao_webhook_deliveries",
            "Webhook deliveries by status (pending is the queue; dead need redelivery)",
            labels=["status"],
        )
        for status in ("pending", "delivered", "dead"):
            deliveries.add_metric([status], stats.get(status, 0))
        yield deliveries
        yield GaugeMetricFamily(
            "fapiao_webhook_attempts",
            "Delivery attempts recorded on the deliveries in the table",
            value=stats.get("attempts", 0),
        )

    def _checkpoints(self) -> Iterator[Metric]:
        merkle = self.services.merkle
        latest = merkle.latest()
        sealed = merkle.sealed_size()
        size = int(latest["tree_size"]) if latest else 0
        yield GaugeMetricFamily(
            "fapiao_checkpoint_tree_size", "Events covered by the latest signed checkpoint", size
        )
        yield GaugeMetricFamily(
            "fapiao_checkpoint_unsigned_events",
            "Sealed events no signed checkpoint covers yet",
            max(sealed - size, 0),
        )
        if latest is not None:
            age = max((self.services.ledger.clock.now() - latest["signed_at"]).total_seconds(), 0)
        else:  # never signed: nothing to sign yet (0), or sealed events no one vouches for
            age = float("inf") if sealed else 0.0
        yield GaugeMetricFamily(
            "fapiao_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (+Inf: events sealed, none signed)",
            age,
        )
        anchors = self.services.anchors.status()
        yield GaugeMetricFamily(
            "fapiao_checkpoint_timestamp_tokens_outstanding",
            "RFC 3161 tokens not yet received: signed checkpoints times configured TSAs, less "
            "the tokens kept",
            anchors.tokens_outstanding,
        )
        yield GaugeMetricFamily(
            "fapiao_checkpoint_cosignatures_outstanding",
            "Configured witnesses that have not cosigned the latest checkpoint",
            anchors.cosignatures_outstanding,
        )

    def _pools(self) -> Iterator[Metric]:
        in_use = GaugeMetricFamily(
            "fapiao_db_pool_in_use", "Database connections checked out, by pool", labels=["pool"]
        )
        size = GaugeMetricFamily(
            "fapiao_db_pool_size", "Connections the pool holds open, by pool", labels=["pool"]
        )
        for name, (used, held) in self.services.pool_usage().items():
            in_use.add_metric([name], used)
            size.add_metric([name], held)
        yield in_use
        yield size

    def _group_commit(self) -> Iterator[Metric]:
        """This process's group commit (FAPIAO_GROUP_COMMIT): commands saved and the
        transactions they took; commands / transactions is the mean group size."""
        group = getattr(self.services.ledger.recorder, "group", None)
        if group is None:
            return
        yield CounterMetricFamily(
            "fapiao_group_commit_commands",
            "Commands saved through group commit in this process",
            group.commands,
        )
        yield CounterMetricFamily(
            "fapiao_group_commit_transactions",
            "Transactions those commands were saved in",
            group.transactions,
        )


def pool_numbers(pool: Any) -> tuple[int, int]:
    """(checked out, held open) of a SQLAlchemy pool; zeros for pools that do not say."""
    checked_out = getattr(pool, "checkedout", None)
    held = getattr(pool, "size", None)
    return (
        int(checked_out()) if callable(checked_out) else 0,
        int(held()) if callable(held) else 0,
    )
