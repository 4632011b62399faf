"""Alerts as signed webhooks: subscriptions, the outbox projection, and the deliverer.

Deliveries are created by a projection, in the same transaction as its tracking row, with
ids derived from (subscription, log position): each alert is queued exactly once, and a rebuild
queues nothing twice. Delivery is at least once: retried with exponential backoff, dead after
N failures, and redeliverable by id. Receivers deduplicate on X-Fapiao-Delivery (the same id on
every attempt). Deliveries run concurrently (at most PER_SUBSCRIPTION at once per
subscription, so a slow receiver delays only its own), each with its own timeout; a claim is
held for CLAIM and extended by a heartbeat while in flight, so another deliverer resends a
crashed one's work within 30 s.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from application.command_keys import take
from application.invoices.ledger import InvoiceLedger
from application.monitoring import alert_rules as alerts_module
from application.ports import Clock
from application.service_errors import IdempotencyKeyReusedError
from domain.idempotency import receipt_id
from infrastructure.monitoring.callback_signatures import sign
from infrastructure.outbound import OutboundFailedError, OutboundGuard, OutboundRefusedError
from infrastructure.store.tables import webhook_deliveries, webhook_subscriptions

log = logging.getLogger("fapiao.happenings")
# A claimed delivery is someone's for this long; the deliverer's heartbeat extends it while the
# request is in flight, so a crashed deliverer's claims lapse and are resent within 30 s.
CLAIM = timedelta(seconds=15)
# At most this many deliveries of one subscription in flight: a hanging receiver cannot take
# the whole pool (16) from the others.
PER_SUBSCRIPTION = 4
DELIVERY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:fapiao-ledger:webhook-delivery:v1")


class WebhookError(Exception):
    """A subscription or delivery request that cannot be done as asked."""


@dataclass(frozen=True)
class Delivery:
    delivery_id: UUID
    subscription_id: UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    payload: dict[str, Any]


class AlertsProjection:
    """Queues a delivery per matching subscription for each alert-worthy event; once a batch
    that queued some has committed, `wake` tells the deliverer (no wait for its poll)."""

    name = alerts_module.NAME
    topics = alerts_module.TOPICS

    def __init__(self, ledger: InvoiceLedger, wake: Callable[[], None] | None = None) -> None:
        self.ledger, self.wake = ledger, wake
        self._queued = False  # the batch in its transaction queued deliveries

    def handles(self, event: object) -> bool:
        return alerts_module.handles(event)

    def _subject(self, originator_id: UUID) -> dict[str, Any]:
        first = next(iter(self.ledger.events.get(originator_id, lte=1)))
        return {
            "tenant_id": first.tenant_id,  # type: ignore[attr-defined]
            "invoice_key": getattr(first, "invoice_key", None),
        }

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, Any]]
    ) -> list[tuple[int, Any, Exception]]:
        failures: list[tuple[int, Any, Exception]] = []
        rows = []
        subscriptions: dict[str, list[Any]] = {}
        for position, event in items:
            try:
                subject = self._subject(event.originator_id)
                found = alerts_module.alert(event, position, subject)
            except Exception as e:  # noqa: BLE001 - dead-lettered by the worker
                failures.append((position, event, e))
                continue
            if found is None:
                continue
            kind, payload = found
            tenant = subject["tenant_id"]
            if tenant not in subscriptions:
                subscriptions[tenant] = list(
                    conn.execute(
                        select(webhook_subscriptions).where(
                            webhook_subscriptions.c.tenant_id == tenant,
                            webhook_subscriptions.c.revoked_at.is_(None),
                        )
                    )
                )
            for sub in subscriptions[tenant]:
                if kind in sub.events.split(","):
                    rows.append(
                        {
                            "delivery_id": uuid5(
                                DELIVERY_NAMESPACE, f"{sub.subscription_id}|{position}"
                            ),
                            "tenant_id": tenant,
                            "subscription_id": sub.subscription_id,
                            "event_type": kind,
                            "payload": json.dumps(payload, ensure_ascii=False),
                            "position": position,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": event.occurred_at,
                            "last_error": None,
                            "created_at": datetime.now(UTC),
                            "delivered_at": None,
                        }
                    )
        if rows:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(insert(webhook_deliveries).on_conflict_do_nothing(), rows)
        self._queued = self._queued or bool(rows)  # a stale True (rolled back) only wakes
        return failures

    def committed(self) -> None:
        """Called by the worker once the batch's transaction has committed."""
        if self._queued and self.wake is not None:
            self.wake()
        self._queued = False

    def reset(self, conn: Connection) -> None:
        """The outbox is a record of what was sent: a rebuild keeps it (ids make it idempotent)."""


CHECKPOINT_SIGNED = "checkpoint.signed"


def queue_checkpoint(conn: Connection, tree_size: int, payload: dict[str, Any]) -> int:
    """Queue the `checkpoint.signed` event (a signed checkpoint with its anchors) to every
    active subscription of every tenant, in the caller's transaction; the deliverer sends it
    like any alert. How many deliveries were queued."""
    now = datetime.now(UTC)
    rows = [
        {
            "delivery_id": uuid5(
                DELIVERY_NAMESPACE, f"{sub.subscription_id}|checkpoint|{tree_size}"
            ),
            "tenant_id": sub.tenant_id,
            "subscription_id": sub.subscription_id,
            "event_type": CHECKPOINT_SIGNED,
            "payload": json.dumps(payload, ensure_ascii=False),
            "position": tree_size,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "created_at": now,
            "delivered_at": None,
        }
        for sub in conn.execute(
            select(webhook_subscriptions).where(webhook_subscriptions.c.revoked_at.is_(None))
        )
    ]
    if rows:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(webhook_deliveries).on_conflict_do_nothing(), rows)
    return len(rows)


class WebhookService:
    def __init__(
        self,
        engine: Engine,
        write_engine: Engine,
        clock: Clock,
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(seconds=10),
        timeout: float = 5.0,
        guard: OutboundGuard | None = None,
        concurrency: int = 16,
        claim: timedelta = CLAIM,
        max_delay: timedelta = timedelta(hours=1),
        changed: threading.Event | None = None,
    ) -> None:
        self.engine, self.write_engine, self.clock = engine, write_engine, clock
        self.max_attempts, self.base_delay, self.timeout = max_attempts, base_delay, timeout
        self.guard = guard or OutboundGuard()
        self.claim, self.max_delay = claim, max_delay
        # Set when a delivery is queued, or a send ends (a retry scheduled, a slot free): the
        # delivery loop re-plans at once.
        self.changed = changed or threading.Event()
        # Deliveries run on a pool, one task per subscription at a time.
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._busy: dict[UUID, int] = {}  # subscription -> its deliveries being sent
        self._queued: set[UUID] = set()  # deliveries handed to the pool
        self._inflight: dict[UUID, int] = {}  # delivery id -> its attempts when claimed
        self._beat_at = float("-inf")  # monotonic time of the last heartbeat's extension

    # ---- subscriptions -----------------------------------------------------------------------

    def subscribe(self, tenant_id: str, url: str, events: Sequence[str]) -> tuple[UUID, str]:
        unknown = sorted(set(events) - set(alerts_module.EVENT_TYPES))
        if unknown or not events:
            raise WebhookError(f"events must be among {', '.join(alerts_module.EVENT_TYPES)}")
        try:
            self.guard.check(url)
        except OutboundRefusedError as e:
            raise WebhookError(str(e)) from None
        # With an Idempotency-Key the id derives from tenant and key: a repeat collides in the
        # one insert and is answered with the first subscription (its secret too).
        idem = take(tenant_id)
        subscription_id = uuid4() if idem is None else receipt_id(tenant_id, idem.key)
        secret = "fwh_" + secrets.token_urlsafe(32)
        try:
            with self.write_engine.begin() as conn:
                conn.execute(
                    webhook_subscriptions.insert().values(
                        subscription_id=subscription_id,
                        tenant_id=tenant_id,
                        url=url,
                        secret=secret,
                        events=",".join(sorted(set(events))),
                        created_at=self.clock.now(),
                        revoked_at=None,
                        request_fingerprint=None if idem is None else idem.fingerprint,
                    )
                )
        except IntegrityError:
            if idem is None:
                raise
            t = webhook_subscriptions.c
            with self.write_engine.connect() as conn:
                first = conn.execute(
                    select(t.secret, t.request_fingerprint).where(
                        t.subscription_id == subscription_id, t.tenant_id == tenant_id
                    )
                ).first()
            if first is None or first.request_fingerprint != idem.fingerprint:
                raise IdempotencyKeyReusedError(idem.key) from None
            return subscription_id, first.secret
        return subscription_id, secret

    def subscriptions(self, tenant_id: str) -> list[dict[str, Any]]:
        t = webhook_subscriptions.c
        with self.engine.connect() as conn:
            return [
                {
                    "subscription_id": r.subscription_id,
                    "url": r.url,
                    "events": r.events.split(","),
                    "created_at": r.created_at,
                }
                for r in conn.execute(
                    select(webhook_subscriptions)
                    .where(t.tenant_id == tenant_id, t.revoked_at.is_(None))
                    .order_by(t.created_at)
                )
            ]

    def unsubscribe(self, tenant_id: str, subscription_id: UUID) -> None:
        t = webhook_subscriptions.c
        with self.write_engine.begin() as conn:
            done = conn.execute(
                update(webhook_subscriptions)
                .where(
                    t.tenant_id == tenant_id,
                    t.subscription_id == subscription_id,
                    t.revoked_at.is_(None),
                )
                .values(revoked_at=self.clock.now())
            )
        if done.rowcount == 0:
            raise WebhookError(f"no active subscription {subscription_id}")

    # ---- deliveries --------------------------------------------------------------------------

    def deliveries(self, tenant_id: str, status: str | None, limit: int) -> list[Delivery]:
        t = webhook_deliveries.c
        query = select(webhook_deliveries).where(t.tenant_id == tenant_id)
        if status:
            query = query.where(t.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.position.desc()).limit(limit))
            return [_delivery(r) for r in rows]

    def redeliver(self, tenant_id: str, delivery_id: UUID) -> None:
        """Queue a delivery again now (typically a dead one, after the receiver was fixed)."""
        t = webhook_deliveries.c
        with self.write_engine.begin() as conn:
            done = conn.execute(
                update(webhook_deliveries)
                .where(
                    t.tenant_id == tenant_id, t.delivery_id == delivery_id, t.status != "pending"
                )
                .values(status="pending", attempts=0, next_attempt_at=self.clock.now())
            )
        if done.rowcount == 0:
            raise WebhookError(f"no delivered or dead delivery {delivery_id}")

    def deliver_due(self, limit: int = 50) -> int:
        """Send every due delivery once, concurrently, and wait for them; returns how many
        succeeded."""
        tried: set[UUID] = set()
        sent = 0
        while started := self.dispatch(limit, tried):
            sent += sum(f.result() for f in started)
        return sent

    def dispatch(self, limit: int = 50, skip: set[UUID] | None = None) -> list[Future[int]]:
        """Start sending what is due without waiting for it: a slow or hanging receiver holds
        up only its own deliveries (PER_SUBSCRIPTION at most)."""
        now = self.clock.now()
        t, s = webhook_deliveries.c, webhook_subscriptions.c
        query = (
            select(webhook_deliveries, s.url, s.secret)
            .join(webhook_subscriptions, s.subscription_id == t.subscription_id)
            .where(t.status == "pending", t.next_attempt_at <= now)
            .order_by(t.next_attempt_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            due = list(conn.execute(query))
        started: list[Future[int]] = []
        for row in due:
            if skip is not None and row.delivery_id in skip:
                continue
            with self._lock:
                busy = self._busy.get(row.subscription_id, 0)
                if row.delivery_id in self._queued or busy >= PER_SUBSCRIPTION:
                    continue
                if skip is not None:
                    skip.add(row.delivery_id)
                self._queued.add(row.delivery_id)
                self._busy[row.subscription_id] = busy + 1
            started.append(self._pool.submit(self._send, row))
        return started

    def _send(self, row: Any) -> int:
        try:
            if not self._claim(row.delivery_id, row.next_attempt_at, self.clock.now()):
                return 0  # another deliverer took it
            with self._lock:
                self._inflight[row.delivery_id] = row.attempts
            try:
                error = self._post(row.url, row.secret, row)
            finally:
                with self._lock:
                    self._inflight.pop(row.delivery_id, None)
            self._record(row, error, self.clock.now())  # the backoff counts from the failure
            return int(error is None)
        finally:
            with self._lock:
                self._queued.discard(row.delivery_id)
                self._busy[row.subscription_id] -= 1
                if not self._busy[row.subscription_id]:
                    del self._busy[row.subscription_id]
            self.changed.set()  # after the slot is free, so the loop can use it

    def heartbeat(self) -> None:
        """Extend the claims of the deliveries in flight here, so only a deliverer that died
        lets its claims lapse (and another resends them once `claim` has passed). At most once
        a quarter of `claim` (a claim always has three quarters left): the delivery loop calls
        this on every wake, and each extension is a write that others would wait behind."""
        with self._lock:
            inflight = dict(self._inflight)
        beat = time.monotonic()
        if not inflight or beat - self._beat_at < self.claim.total_seconds() / 4:
            return
        self._beat_at = beat
        t = webhook_deliveries.c
        until = self.clock.now() + self.claim
        with self.write_engine.begin() as conn:
            for delivery_id, attempts in inflight.items():
                conn.execute(
                    update(webhook_deliveries)
                    .where(
                        t.delivery_id == delivery_id,
                        t.status == "pending",
                        t.attempts == attempts,  # not yet recorded: still in flight
                    )
                    .values(next_attempt_at=until)
                )

    def seconds_to_next(self, cap: float) -> float:
        """How long until the next pending delivery is due (at most `cap`)."""
        t = webhook_deliveries.c
        with self.engine.connect() as conn:
            soonest = conn.execute(
                select(func.min(t.next_attempt_at)).where(t.status == "pending")
            ).scalar_one()
        if soonest is None:
            return cap
        return max(0.0, min(cap, (soonest - self.clock.now()).total_seconds()))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _claim(self, delivery_id: UUID, seen: datetime, now: datetime) -> bool:
        t = webhook_deliveries.c
        with self.write_engine.begin() as conn:
            lease = conn.execute(
                update(webhook_deliveries)
                .where(
                    t.delivery_id == delivery_id, t.status == "pending", t.next_attempt_at == seen
                )
                .values(next_attempt_at=now + self.claim)
            )
        return lease.rowcount == 1

    def _post(self, url: str, secret: str, row: Any) -> str | None:
        body = json.dumps(
            {
                "delivery_id": str(row.delivery_id),
                "event": row.event_type,
                "data": json.loads(row.payload),
            },
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "X-Fapiao-Event": row.event_type,
            "X-Fapiao-Delivery": str(row.delivery_id),
            "X-Fapiao-Timestamp": timestamp,
            "X-Fapiao-Signature": sign(secret, timestamp, body),
        }
        try:  # checked again on every attempt: where a name leads can change
            response = self.guard.post(url, body, headers, self.timeout)
        except (OutboundRefusedError, OutboundFailedError) as e:
            return str(e)  # safe to show: never what the network said
        return None if 200 <= response.status < 300 else f"HTTP {response.status}"

    def _record(self, row: Any, error: str | None, now: datetime) -> None:
        t = webhook_deliveries.c
        attempts = row.attempts + 1
        if error is None:
            values: dict[str, Any] = {
                "status": "delivered",
                "attempts": attempts,
                "delivered_at": now,
                "last_error": None,
            }
        elif attempts >= self.max_attempts:
            values = {"status": "dead", "attempts": attempts, "last_error": error}
            log.warning(
                "webhook dead",
                extra={
                    "delivery_id": str(row.delivery_id),
                    "subscription_id": str(row.subscription_id),
                    "tenant_id": row.tenant_id,
                    "webhook_event": row.event_type,
                    "attempts": attempts,
                    "last_error": error,
                },
            )
        else:
            values = {
                "attempts": attempts,
                "last_error": error,
                "next_attempt_at": now
                + min(self.base_delay * 2 ** min(attempts - 1, 30), self.max_delay),
            }
        with self.write_engine.begin() as conn:
            conn.execute(
                update(webhook_deliveries).where(t.delivery_id == row.delivery_id).values(**values)
            )

    def count(self, tenant_id: str, status: str) -> int:
        t = webhook_deliveries.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(webhook_deliveries)
                    .where(t.tenant_id == tenant_id, t.status == status)
                ).scalar_one()
            )

    def stats(self) -> dict[str, int]:
        """Deliveries by status over every tenant, and the attempts recorded on them."""
        t = webhook_deliveries.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.status, func.count(), func.coalesce(func.sum(t.attempts), 0)).group_by(
                    t.status
                )
            ).all()
        out = {status: int(n) for status, n, _ in rows}
        out["attempts"] = sum(int(a) for _, _, a in rows)
        return out


def _delivery(r: Any) -> Delivery:
    return Delivery(
        r.delivery_id,
        r.subscription_id,
        r.event_type,
        r.status,
        r.attempts,
        r.next_attempt_at,
        r.last_error,
        r.delivered_at,
        json.loads(r.payload),
    )
