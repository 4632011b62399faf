"""Fixtures: every test gets its own fresh, migrated database on each store it runs against.

PostgreSQL comes from FAPIAO_TEST_POSTGRES_URL (default postgresql://root@127.0.0.1:5432/postgres).
If no server answers, the PostgreSQL tests are skipped and the run says so plainly; with
FAPIAO_REQUIRE_POSTGRES=1 (CI sets it) that is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate
from tests.fakes import SettableClock

PG_ADMIN_URL = os.environ.get(
    "FAPIAO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("FAPIAO_REQUIRE_POSTGRES", "") not in ("", "0", "no", "false")
RUN_ID = uuid.uuid4().hex[:8]
_pg_error: str | None = None


def _probe_postgres() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def pytest_configure(config: pytest.Config) -> None:
    global _pg_error
    _pg_error = _probe_postgres()


def pytest_report_header(config: pytest.Config) -> str:
    if _pg_error is None:
        return f"PostgreSQL: {PG_ADMIN_URL.rsplit('@', 1)[-1]} (suite enabled)"
    return f"PostgreSQL: unreachable ({_pg_error}); PostgreSQL suite will be SKIPPED"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _pg_error is None:
        return
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"no PostgreSQL: {_pg_error}"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_PG and _pg_error is not None:
        raise pytest.UsageError(
            f"FAPIAO_REQUIRE_POSTGRES is set but PostgreSQL is unreachable: {_pg_error}"
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """Outermost, so the notice comes after pytest's own summary, beside the final counts."""
    yield
    if _pg_error is not None:
        terminalreporter.write_line(
            "PostgreSQL suite SKIPPED: no server at "
            f"{PG_ADMIN_URL.rsplit('@', 1)[-1]} ({_pg_error}). Only SQLite was tested.",
            yellow=True,
            bold=True,
        )


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"fapiao_tpl_{RUN_ID}"
    _admin(f'CREATE DATABASE "{name}"')
    migrate.upgrade(Settings(database_url=_pg_url(name)))
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    migrate.upgrade(Settings(database_url=f"sqlite:///{path}"))
    return path


_counter = iter(range(1_000_000))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked `both_commit_paths` runs each of its tests on both command save paths:
    group commit (FAPIAO_GROUP_COMMIT on, the default) and one transaction per command."""
    if metafunc.definition.get_closest_marker("both_commit_paths") is None:
        return
    if "commit_path" in metafunc.fixturenames:
        metafunc.parametrize("commit_path", ["grouped", "plain"])


@pytest.fixture
def commit_path() -> str | None:
    """How commands save: "grouped", "plain", or None for the setting's default (and
    FAPIAO_GROUP_COMMIT); see pytest_generate_tests."""
    return None


def _commit_settings(commit_path: str | None) -> dict[str, bool]:
    return {} if commit_path is None else {"group_commit": commit_path == "grouped"}


@pytest.fixture
def pg_settings(pg_template: str, tmp_path: Path, commit_path: str | None) -> Iterator[Settings]:
    name = f"fapiao_t_{RUN_ID}_{next(_counter)}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield Settings(
        database_url=_pg_url(name),
        pool_size=2,
        max_overflow=4,
        projection_poll_seconds=0.2,
        environment="test",
        data_dir=tmp_path,
        **_commit_settings(commit_path),  # type: ignore[arg-type]
    )
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_settings(sqlite_template: Path, tmp_path: Path, commit_path: str | None) -> Settings:
    path = tmp_path / "ledger.db"
    shutil.copy(sqlite_template, path)
    return Settings(
        database_url=f"sqlite:///{path}",
        projection_poll_seconds=0.2,
        environment="test",
        data_dir=tmp_path,
        **_commit_settings(commit_path),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, commit_path: str | None) -> Settings:
    """A fresh migrated database on each store: the contract suites run against both.
    (`commit_path` is named so that the store fixtures chosen here see its parameter.)"""
    fixture = "sqlite_settings" if request.param == "sqlite" else "pg_settings"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def services(settings: Settings, clock: SettableClock) -> Iterator[Services]:
    svc = build_services(settings, clock)
    yield svc
    svc.close()


@pytest.fixture
def pg_services(pg_settings: Settings, clock: SettableClock) -> Iterator[Services]:
    svc = build_services(pg_settings, clock)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[object]:
    """A PostgreSQL cluster of the tests' own (restore target elsewhere), stopped at the end."""
    from tests.pg_cluster import PrivateCluster

    cluster = PrivateCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
