"""Alembic owns every table on both stores; migrations go down and up; the code's metadata and
the migrated schema agree; running the service creates nothing alembic did not."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from infrastructure.store.tables import metadata
from tests.builders import SELLER, a_draft, by

LIBRARY_TABLES = {
    "postgresql": {"ledger_events", "ledger_snapshots"},
    "sqlite": {"stored_events", "stored_snapshots"},
}


def tables(settings: Settings) -> set[str]:
    engine = create_engine(settings.url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_go_down_to_nothing_and_up_again(settings: Settings) -> None:
    assert migrate.current_revision(settings) == migrate.head_revision(settings)
    migrate.downgrade(settings, "base")
    assert tables(settings) == set()
    migrate.upgrade(settings)
    dialect = "postgresql" if settings.is_postgres else "sqlite"
    assert LIBRARY_TABLES[dialect] | set(metadata.tables) == tables(settings)


def test_the_migrated_schema_matches_the_code(settings: Settings) -> None:
    engine = create_engine(settings.url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    ours = [
        d
        for d in diff
        if not (
            d[0] == "remove_table"
            and d[1].name in LIBRARY_TABLES["postgresql"] | LIBRARY_TABLES["sqlite"]
        )
    ]
    ours = [
        d
        for d in ours
        if not (
            d[0] == "remove_index"
            and d[1].table.name in LIBRARY_TABLES["postgresql"] | LIBRARY_TABLES["sqlite"]
        )
    ]
    assert ours == []


def test_running_the_service_creates_no_table_of_its_own(settings: Settings) -> None:
    before = tables(settings)
    services = build_services(settings)
    try:
        assert services.ledger.env.get("CREATE_TABLE") == "no"
        services.ledger.issue_invoice(SELLER, a_draft(), by())
        services.worker("invoice_status").catch_up()
        services.keys.ensure_tenant(SELLER, "x")
    finally:
        services.close()
    assert tables(settings) == before
