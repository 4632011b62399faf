"""Transient versus poison, with the workers running: a lock timeout (a real one, another
session holding the view's table) is retried and never dead-lettered; an event the database
refuses (a trigger standing for a bad deploy) is dead-lettered only after failing the same way
N times, and once the cause is fixed the admin API and `fapiao projections
replay-dead-letters` apply it again while the workers keep running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.http.app import create_app
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from tests.builders import SELLER, issue_json
from tests.e2e.test_api import Api
from tests.fakes import SettableClock
from tests.test_cli import fapiao


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=True)) as client:
        yield Api(client, services)


def refuse(services: Services, invoice_key: str) -> None:
    """A trigger refusing one invoice's row in the status view (a deploy gone wrong)."""
    with services.engine.begin() as conn:
        if services.settings.is_postgres:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.invoice_key = '{invoice_key}' THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE INSERT OR UPDATE ON invoice_status "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE INSERT ON invoice_status "
                    f"WHEN NEW.invoice_key = '{invoice_key}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )


def allow(services: Services) -> None:
    with services.engine.begin() as conn:
        conn.execute(
            text(
                "DROP TRIGGER refuse_one"
                + (" ON invoice_status" if services.settings.is_postgres else "")
            )
        )


def caught_up(api: Api, name: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["projection"]: r for r in api.services.projection_status()}
        if rows[name]["lag"] == 0 or time.monotonic() > deadline:
            return rows[name]
        time.sleep(0.05)


def test_a_refused_event_is_dead_lettered_after_n_tries_and_replayed_once_fixed(api: Api) -> None:
    admin = api.key(SELLER, "admin")
    bad, good = issue_json(), issue_json()
    refuse(api.services, bad["number"])
    first = api.post("/v1/invoices", bad).json()
    second = api.post("/v1/invoices", good).json()
    status = caught_up(api, "invoice_status")
    worker = api.services.worker("invoice_status")
    tries = api.services.settings.projection_poison_tries
    print(
        f"\npoison: dead letters {status['dead_letters']}, retried {status['poison_retries']} "
        f"times before ({tries} tries), retries {status['retries']}"
    )
    assert status["dead_letters"] == 1 and status["poison_retries"] == tries - 1
    assert (
        api.services.reader.get(SELLER, UUID(second["invoice_id"])) is not None
    )  # others moved on
    assert api.services.reader.get(SELLER, UUID(first["invoice_id"])) is None
    ready = api.client.get("/readyz").json()
    shown = {p["projection"]: p for p in ready["projections"]}["invoice_status"]
    assert shown["dead_letters"] == 1 and shown["retries"] >= tries - 1
    still = api.client.post(
        "/v1/admin/projections/invoice_status/dead-letters/replay", headers=admin
    )
    assert still.json() == {
        "projection": "invoice_status",
        "replayed": 0,
        "still_failing": 1,
        "dead_letters": 1,
    }
    clerk = api.client.post(
        "/v1/admin/projections/invoice_status/dead-letters/replay", headers=api.clerk
    )
    assert clerk.status_code == 403
    allow(api.services)  # the fix
    more = api.post("/v1/invoices", issue_json()).json()  # the workers keep running meanwhile
    fixed = api.client.post(
        "/v1/admin/projections/invoice_status/dead-letters/replay", headers=admin
    )
    assert fixed.json() == {
        "projection": "invoice_status",
        "replayed": 1,
        "still_failing": 0,
        "dead_letters": 0,
    }
    assert api.services.reader.get(SELLER, UUID(first["invoice_id"])) is not None
    assert caught_up(api, "invoice_status")["dead_letters"] == 0
    assert api.services.reader.get(SELLER, UUID(more["invoice_id"])) is not None
    assert worker.dead_letter_count() == 0


def test_the_cli_replays_dead_letters_and_says_what_is_left(settings: Settings) -> None:
    services = build_services(settings, SettableClock())
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        bad = issue_json()
        refuse(services, bad["number"])
        with TestClient(create_app(services=services, run_workers=True)) as client:
            api = Api(client, services)
            api.post("/v1/invoices", bad)
            assert caught_up(api, "invoice_status")["dead_letters"] == 1
            failing = fapiao(settings, "projections", "replay-dead-letters", "invoice_status")
            assert failing.returncode == 1 and "0 replayed, 1 still failing" in failing.stdout
            allow(services)
            done = fapiao(settings, "projections", "replay-dead-letters", "invoice_status")
            assert done.returncode == 0, done.stderr
            assert "1 replayed, 0 still failing" in done.stdout
            assert services.worker("invoice_status").dead_letter_count() == 0
    finally:
        services.close()


@pytest.mark.postgres
def test_a_lock_timeout_is_retried_and_never_dead_lettered(pg_settings: Settings) -> None:
    url = pg_settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    # The store's connections set their own lock_timeout (FAPIAO_LOCK_TIMEOUT_SECONDS): 1 s,
    # and the lock below is held for 2.5 s, so the projection's batch times out at least once.
    services = build_services(
        pg_settings.model_copy(update={"lock_timeout_seconds": 1}), SettableClock()
    )
    holder = psycopg.connect(url)
    try:
        services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
        with TestClient(create_app(services=services, run_workers=True)) as client:
            api = Api(client, services)
            caught_up(api, "invoice_status")
            holder.execute("LOCK TABLE invoice_status IN ACCESS EXCLUSIVE MODE")
            released = threading.Timer(2.5, holder.commit)
            released.start()
            started = time.monotonic()
            created = api.post("/v1/invoices", issue_json()).json()
            released.join()
            status = caught_up(api, "invoice_status")
            seconds = time.monotonic() - started
            print(
                f"\nlock timeout: retries {status['retries']}, dead letters "
                f"{status['dead_letters']}, applied {seconds:.2f} s after the write"
            )
            assert status["retries"] >= 1 and status["dead_letters"] == 0
            assert services.reader.get(SELLER, UUID(created["invoice_id"])) is not None
            assert seconds < 2.5 + 2.0  # back within 2 s of the lock's release
    finally:
        holder.close()
        services.close()
