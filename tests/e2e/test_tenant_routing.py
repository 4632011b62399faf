"""Tenant routing by setting, with two real databases: one tenant's ledger lives in a second
database (a cell with its own event log, projections, seal and checkpoints); requests and CLI
commands reach the right one by key or tenant; a key left behind in the old database is refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Cells
from infrastructure.monitoring.callback_signatures import sign
from infrastructure.settings import Settings
from tests.builders import OTHER_TENANT, SELLER, issue_json
from tests.conftest import RUN_ID, _admin, _pg_url
from tests.test_cli import fapiao

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_databases(pg_template: str, tmp_path: Path) -> Iterator[Settings]:
    names = [f"fapiao_cell_{RUN_ID}_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield Settings(
            database_url=_pg_url(names[0]),
            tenant_databases={OTHER_TENANT: _pg_url(names[1])},
            data_dir=tmp_path,
            environment="test",
            projection_poll_seconds=0.2,
            pool_size=2,
        )
    finally:
        for name in names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(settings: Settings, *args: str) -> str:
    r = fapiao(settings, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def events_in(url: str) -> list[str]:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        return [t for (t,) in conn.execute("SELECT topic FROM ledger_events ORDER BY 1")]


def tenants_in(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [t for (t,) in conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")]


def key_of(output: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {next(w for w in output.split() if w.startswith('fpl_'))}"}


def test_each_tenant_lives_in_its_own_database(two_databases: Settings) -> None:
    settings = two_databases
    a, b = settings.database_url or "", settings.tenant_databases[OTHER_TENANT]
    mine = key_of(cli(settings, "keys", "create", "--tenant", SELLER, "--roles", "clerk,admin"))
    theirs = key_of(
        cli(settings, "keys", "create", "--tenant", OTHER_TENANT, "--roles", "clerk,admin")
    )
    assert tenants_in(a) == [SELLER] and tenants_in(b) == [OTHER_TENANT]
    app = create_app(settings, run_workers=True)
    with TestClient(app) as client:
        cells: Cells = app.state.cells
        assert len(cells.cells) == 2
        ours = client.post("/v1/invoices", json=issue_json(), headers=mine)
        other = client.post("/v1/invoices", json=issue_json(), headers=theirs)
        assert ours.status_code == other.status_code == 201
        # Read-your-writes in each cell: each has its own log positions and workers.
        for made, key in ((ours.json(), mine), (other.json(), theirs)):
            got = client.get(
                f"/v1/invoices/{made['invoice_id']}",
                params={"consistent_after": made["position"]},
                headers=key,
            )
            assert got.status_code == 200, got.text
        assert ours.json()["position"] == other.json()["position"] == 1
        # Another tenant's invoice is not found, whichever database it is in.
        assert (
            client.get(f"/v1/invoices/{other.json()['invoice_id']}", headers=mine).status_code
            == 404
        )
        assert (
            client.get(f"/v1/invoices/{ours.json()['invoice_id']}", headers=theirs).status_code
            == 404
        )
        # Signed callbacks find the tenant's database by X-Fapiao-Tenant.
        secret = client.post("/v1/platform/callback-secret", headers=theirs).json()["secret"]
        client.post(
            f"/v1/invoices/{other.json()['invoice_id']}/submissions", json={}, headers=theirs
        )
        body = json.dumps(
            {
                "kind": "acknowledged",
                "invoice_key": other.json()["invoice_key"],
                "platform_ref": "SW9",
                "at": "2026-11-20T10:00:00+08:00",
            }
        ).encode()
        ts = str(int(time.time()))
        acked = client.post(
            "/v1/platform/callbacks",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Fapiao-Tenant": OTHER_TENANT,
                "X-Fapiao-Timestamp": ts,
                "X-Fapiao-Signature": sign(secret, ts, body),
            },
        )
        assert acked.status_code == 200, acked.text
        # Each cell seals its own log under its own origin.
        for cell in cells.cells:
            cell.bring_up_to_date("seal")
        notes = [cell.merkle.checkpoint_now() for cell in cells.cells]
        origins = [n["note"].splitlines()[0] for n in notes if n]
        assert origins[0] == settings.log_origin and origins[1].startswith(
            settings.log_origin + "/"
        )
    assert events_in(a) == ["fapiao.invoice.issued.v1"]
    assert sorted(set(events_in(b))) == [
        "fapiao.command_receipt.recorded.v1",
        "fapiao.invoice.acknowledged.v1",
        "fapiao.invoice.issued.v1",
        "fapiao.invoice.submitted.v1",
    ]
    # The CLI finds the tenant's database too.
    assert "acknowledgement window 24 h" in cli(
        settings, "policy", "show", "--tenant", OTHER_TENANT
    )


def test_a_key_left_in_the_old_database_is_refused(two_databases: Settings) -> None:
    settings = two_databases
    left_behind = key_of(
        cli(
            settings.model_copy(update={"tenant_databases": {}}),
            "keys",
            "create",
            "--tenant",
            OTHER_TENANT,
            "--roles",
            "clerk",
        )
    )  # made before the tenant was routed to its own database
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/invoices", json=issue_json(), headers=left_behind)
        assert r.status_code == 401
        assert "served from another database" in r.json()["detail"]
    assert events_in(settings.database_url or "") == []
