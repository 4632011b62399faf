"""Fencing: a runner that lost its lock (its lock connection killed) has its next batch rolled
back, while the successor that took the lock writes; and status_daily is derived, so a batch
applied again (a stale leader's, after the successor's) cannot double it."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select, text

from application.invoices.lifecycle import SubmitRequest
from infrastructure.bootstrap import Services
from infrastructure.projections.worker import LeadershipLostError
from infrastructure.store.tables import invoice_status, status_daily
from tests.builders import SELLER, a_draft, by

pytestmark = pytest.mark.both_commit_paths  # group commit on and off


def daily(services: Services) -> list[tuple[object, ...]]:
    with services.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(status_daily)))


def test_a_batch_applied_twice_does_not_double_status_daily(services: Services) -> None:
    for _ in range(5):
        r = services.ledger.issue_invoice(SELLER, a_draft(), by())
        services.ledger.change_invoice(SELLER, r.invoice_id, SubmitRequest(channel="erp"), by())
    worker = services.worker("invoice_status")
    worker.catch_up()
    first = daily(services)
    assert sum(int(row[3]) for row in first) == 10  # 5 issued + 5 submitted  # type: ignore[call-overload]
    with services.write_engine.begin() as conn:  # as if the batch had not been recorded
        conn.execute(text("UPDATE invoice_status_tracking SET notification_id = 0"))
    worker.catch_up()
    assert daily(services) == first


@pytest.mark.postgres
def test_a_runner_that_lost_its_lock_cannot_commit_beside_its_successor(
    pg_services: Services,
) -> None:
    services = pg_services
    worker = services.worker("invoice_status")
    worker.catch_up()
    stale = worker.leadership()
    assert stale.try_acquire()
    worker._leadership = stale  # noqa: SLF001 - as run() holds it while active
    pid = services.active_runner("invoice_status")
    assert pid is not None
    url = services.settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:  # its lock connection is cut
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND pid <> pg_backend_pid() AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"  # not other tests'
        )
    successor = worker.leadership()
    assert successor.try_acquire()
    made = services.ledger.issue_invoice(SELLER, a_draft(), by())
    before = worker.position()
    with pytest.raises(LeadershipLostError):
        worker.process_batch()
    assert worker.position() == before and worker.state.fenced == 1
    with services.engine.connect() as conn:
        assert (
            conn.execute(
                select(invoice_status).where(invoice_status.c.invoice_id == made.invoice_id)
            ).first()
            is None
        )  # nothing of the stale batch was written
    worker._leadership = successor  # noqa: SLF001
    assert worker.process_batch() == 1
    successor.release()
    stale.release()
    worker._leadership = None  # noqa: SLF001
