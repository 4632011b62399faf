"""Settings for tenant cells and replicas: each database's log has one origin, whichever
process serves it; routing and replica URLs are checked at startup."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infrastructure.settings import Settings
from tests.builders import OTHER_TENANT, SELLER

A = "postgresql://u@db-a:5432/ledger_a"
B = "postgresql://u@db-b:5432/ledger_b"


def test_a_cell_has_its_own_origin_in_every_process() -> None:
    api = Settings(database_url=A, tenant_databases={OTHER_TENANT.lower(): B})
    assert api.origin == "fapiao-ledger.local/ledger"
    cell = api.for_tenant(OTHER_TENANT)
    assert cell.database_url == B and cell.origin == "fapiao-ledger.local/ledger/ledger_b"
    # `FAPIAO_DATABASE_URL=<cell> fapiao worker` with the same routing signs the same origin.
    worker = Settings(database_url=B, tenant_databases={OTHER_TENANT: B})
    assert worker.origin == cell.origin
    assert api.for_tenant(SELLER) is api
    assert [c.database_url for c in api.cells()] == [A, B]


def test_replica_and_routing_urls_are_checked() -> None:
    with pytest.raises(ValidationError, match="FAPIAO_READ_DATABASE_URL"):
        Settings(read_database_url="sqlite:///replica.db")
    with pytest.raises(ValidationError, match="FAPIAO_TENANT_DATABASES"):
        Settings(tenant_databases={SELLER: "mysql://x/y"})
    replica = Settings(database_url=A, read_database_url=B)
    assert replica.read_url is not None and replica.read_url.drivername == "postgresql+psycopg"
    assert replica.for_tenant(SELLER).read_database_url == B
