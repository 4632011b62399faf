"""Alerts as signed webhooks: subscriptions, the outbox projection, and the deliverer.

Deliveries are created by a projection, in the same transaction as its tracking row, with
ids derived from (subscription, log position): each alert is queued exactly once, and a rebuild
queues nothing twice. Delivery is at least once: retried with exponential backoff, dead after
N failures, and redeliverable by id.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from application.invoices.ledger import InvoiceLedger
from application.monitoring import alert_rules as alerts_module
from application.ports import Clock
from infrastructure.monitoring.callback_signatures import sign
from infrastructure.outbound import OutboundFailedError, OutboundGuard, OutboundRefusedError
from infrastructure.store.tables import webhook_deliveries, webhook_subscriptions

log = logging.getLogger("fapiao.happenings")
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
    """Queues a delivery per matching subscription for each alert-worthy event."""

    name = alerts_module.NAME
    topics = alerts_module.TOPICS

    def __init__(self, ledger: InvoiceLedger) -> None:
        self.ledger = ledger

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
        return failures

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
    ) -> None:
        self.engine, self.write_engine, self.clock = engine, write_engine, clock
        self.max_attempts, self.base_delay, self.timeout = max_attempts, base_delay, timeout
        self.guard = guard or OutboundGuard()

    # ---- subscriptions -----------------------------------------------------------------------

    def subscribe(self, tenant_id: str, url: str, events: Sequence[str]) -> tuple[UUID, str]:
        unknown = sorted(set(events) - set(alerts_module.EVENT_TYPES))
        if unknown or not events:
            raise WebhookError(f"events must be among {', '.join(alerts_module.EVENT_TYPES)}")
        try:
            self.guard.check(url)
        except OutboundRefusedError as e:
            raise WebhookError(str(e)) from None
        subscription_id, secret = uuid4(), "fwh_" + secrets.token_urlsafe(32)
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
                )
            )
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
        """Send every due delivery once; returns how many succeeded."""
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
        sent = 0
        for row in due:
            if not self._claim(row.delivery_id, row.next_attempt_at, now):
                continue  # another deliverer took it
            error = self._post(row.url, row.secret, row)
            self._record(row, error, now)
            sent += error is None
        return sent

    def _claim(self, delivery_id: UUID, seen: datetime, now: datetime) -> bool:
        t = webhook_deliveries.c
        with self.write_engine.begin() as conn:
            lease = conn.execute(
                update(webhook_deliveries)
                .where(
                    t.delivery_id == delivery_id, t.status == "pending", t.next_attempt_at == seen
                )
                .values(next_attempt_at=now + timedelta(minutes=2))
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
                "next_attempt_at": now + self.base_delay * 2 ** (attempts - 1),
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
