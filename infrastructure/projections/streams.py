"""streams: the tenant of every aggregate, read from its first event's stored state (every
created event carries `tenant_id`), so ledger-wide exports can be tenant-scoped cheaply."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, delete, select

from application.invoices.ledger import InvoiceLedger
from application.ports import StoredEventRow
from infrastructure.store.tables import streams


class StreamsProjection:
    name = "streams"
    topics: frozenset[str] = frozenset()
    raw = True

    def handles(self, event: object) -> bool:
        return True

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, StoredEventRow]]
    ) -> list[tuple[int, Any, Exception]]:
        rows: list[dict[str, Any]] = []
        failures: list[tuple[int, Any, Exception]] = []
        for position, row in items:
            if row.originator_version != 1:
                continue
            try:
                tenant = json.loads(row.state).get("tenant_id")
            except ValueError as e:
                failures.append((position, row, e))
                continue
            if isinstance(tenant, str):
                rows.append(
                    {"stream_id": row.originator_id, "tenant_id": tenant, "first_topic": row.topic}
                )
        if rows:
            conn.execute(streams.insert(), rows)
        return failures

    def reset(self, conn: Connection) -> None:
        conn.execute(delete(streams))


def tenant_events(
    ledger: InvoiceLedger,
    engine: Engine,
    tenant_id: str,
    after: int,
    to_position: int | None,
    since: datetime | None,
    until: datetime | None,
    page: int = 1000,
) -> Iterator[dict[str, Any]]:
    """The tenant's events in log order within the bounds, decoded, page by page."""
    from application.invoices.ledger import _jsonable

    position = after
    while True:
        rows = ledger.event_log.select_rows(position, page)
        if not rows:
            return
        position = rows[-1].position
        ids = list({r.originator_id for r in rows})
        with engine.connect() as conn:
            mine: set[UUID] = {
                s
                for (s,) in conn.execute(
                    select(streams.c.stream_id).where(
                        streams.c.stream_id.in_(ids), streams.c.tenant_id == tenant_id
                    )
                )
            }
        for r in rows:
            if to_position is not None and r.position > to_position:
                return
            if until is not None and r.recorded_at > until:
                return  # recorded_at rises with the position (taken under the table lock)
            if r.originator_id not in mine or (since is not None and r.recorded_at < since):
                continue
            from eventsourcing.persistence import StoredEvent

            event = ledger.mapper.to_domain_event(
                StoredEvent(r.originator_id, r.originator_version, r.topic, r.state)
            )
            yield {
                "position": r.position,
                "stream_id": str(r.originator_id),
                "version": r.originator_version,
                "topic": r.topic,
                "type": type(event).__name__,
                "recorded_at": r.recorded_at.isoformat(),
                "data": {
                    k: _jsonable(v)
                    for k, v in vars(event).items()
                    if k not in ("originator_id", "originator_version")
                },
            }
