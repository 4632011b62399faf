"""Settings: the only reader of the environment (FAPIAO_*), and the library's env built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

LOCAL_DATA_DIR = Path(".fapiao")


def default_data_dir() -> Path:
    """`./.fapiao` if the current folder has one (a checkout's own), else the user's data
    folder (e.g. ~/.local/share/fapiao-ledger), so the CLI works from any folder."""
    if LOCAL_DATA_DIR.is_dir():
        return LOCAL_DATA_DIR.resolve()
    return Path(platformdirs.user_data_dir("fapiao-ledger", appauthor=False))


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


class Settings(BaseSettings):
    """`FAPIAO_DATABASE_URL` picks the store; without it, SQLite in `FAPIAO_DATA_DIR`."""

    model_config = SettingsConfigDict(env_prefix="FAPIAO_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="sqlite:///path/to/ledger.db or postgresql://user:pw@host:5432/db",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="SQLite file, keys and attachments (default ./.fapiao if present, else the "
        "user's data folder); made absolute at startup",
    )
    read_database_url: str | None = Field(
        default=None,
        description="A streaming replica for list, history and queue reads (PostgreSQL)",
    )
    tenant_databases: dict[str, str] = Field(
        default_factory=dict,
        description="JSON {tenant code: database URL}: tenants whose ledger lives in another "
        "database (a cell); all others use FAPIAO_DATABASE_URL",
    )
    pool_size: int = Field(default=4, ge=1, le=64)
    max_overflow: int = Field(default=8, ge=0, le=128)
    pool_keep: bool = Field(
        default=False,
        description="Keep every connection the read and write pools open (up to pool_size + "
        "max_overflow), rather than closing the overflow ones on return: under load a "
        "PostgreSQL connect costs 1-2 s. `fapiao serve` turns it on unless FAPIAO_POOL_KEEP "
        "is set; tests and one-shot commands keep it off",
    )
    lock_timeout_seconds: int = Field(default=5, ge=1)
    projection_batch_size: int = Field(default=2000, ge=1, le=10_000)
    projection_poll_seconds: float = Field(default=2.0, gt=0)
    projection_linger_seconds: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="After a wake-up, how long a projection waits for more events before its "
        "batch, so commands get the single SQLite writer between batches (default 0.05 on "
        "SQLite, 0 on PostgreSQL)",
    )
    projection_poison_tries: int = Field(
        default=3,
        ge=1,
        le=100,
        description="An event that fails alone is dead-lettered after failing this many times "
        "the same way (transient errors are never dead-lettered)",
    )
    projection_max_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="A projection retries a failed batch after a backoff doubling from 0.2 s "
        "to this",
    )
    outbound_allow: str = Field(
        default="",
        max_length=4096,
        description="Comma-separated CIDR ranges and host names outbound requests (webhooks) "
        "may reach although internal or reserved (on-premises receivers); default none",
    )
    projection_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="/readyz fails when a projection behind the head has not advanced for this "
        "long",
    )
    group_commit: bool = Field(
        default=True,
        description="Concurrent commands of this process share one transaction (each still "
        "its own decision, optimistic check and receipt, under a savepoint of its own); a "
        "lone command is saved at once, as without it",
    )
    group_commit_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=50,
        description="Longest a group waits for the commands it expects (as many as its "
        "previous group had) before it commits (milliseconds)",
    )
    group_commit_max_size: int = Field(
        default=32, ge=1, le=1000, description="Most commands one group transaction saves"
    )
    consistent_read_timeout: float = Field(default=5.0, ge=0, le=60)
    consistent_read_max_waiters: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Requests that may wait for a projection at once (consistent_after); more "
        "are answered 503 at once",
    )
    timer_tick_seconds: float = Field(
        default=15.0, gt=0, description="How often overdue acknowledgements are looked for"
    )
    attachments_dir: Path | None = Field(
        default=None, description="Where attachments are kept (default: <data dir>/attachments)"
    )
    attachment_limit_mb: int = Field(default=20, ge=1, le=1024)
    max_json_body_kb: int = Field(
        default=1024,
        ge=16,
        le=65_536,
        description="Largest JSON or form request body (KiB); refused with 413 before reading",
    )
    reconciliation_upload_limit_mb: int = Field(
        default=100,
        ge=1,
        le=2048,
        description="Largest platform export (and evidence bundle) upload (MiB)",
    )
    upload_inflated_limit_mb: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="What an uploaded XLSX may inflate to (its shared strings: half of it); "
        "checked from the zip's directory before reading",
    )
    reconciliation_time_budget_seconds: float = Field(
        default=600.0, gt=0, le=86_400, description="Longest a reconciliation may read its file"
    )
    shutdown_grace_seconds: int = Field(
        default=10,
        ge=1,
        le=300,
        description="On SIGTERM, how long running requests may finish before they are cut off",
    )
    max_connections: int = Field(
        default=512, ge=8, le=100_000, description="Connections served at once; more get 503"
    )
    write_statement_timeout_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="PostgreSQL statement timeout on the write connections (lock timeout: "
        "FAPIAO_LOCK_TIMEOUT_SECONDS)",
    )
    max_query_value_length: int = Field(
        default=512, ge=64, le=65_536, description="Longest query parameter value (characters)"
    )
    keys_dir: Path | None = Field(
        default=None, description="Checkpoint signing keys (default: <data dir>/keys)"
    )
    signing_key: SecretStr | None = Field(
        default=None,
        description="Checkpoint signing key as a hex Ed25519 seed (instead of a key file)",
    )
    log_origin: str = Field(
        default="fapiao-ledger.local/ledger",
        description="The log's name in checkpoints (C2SP origin)",
    )
    checkpoint_every: int = Field(
        default=1000, ge=1, description="Sign a checkpoint every N sealed events"
    )
    checkpoint_minutes: float = Field(default=10.0, gt=0, description="... or after M minutes")
    tsa_urls: str = Field(
        default="",
        max_length=4000,
        description="RFC 3161 time-stamping authorities (http(s) URLs, comma-separated): each "
        "signed checkpoint gets a token from every one",
    )
    tsa_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates the TSAs' certificates chain to (a token "
        "is checked against them before it is kept)",
    )
    witnesses: dict[str, str] = Field(
        default_factory=dict,
        description='Witnesses (c2sp.org/tlog-witness) as JSON: {"<submission URL>": "<witness '
        'verifier key>"}; each new checkpoint is sent to every one',
    )
    witness_quorum: int | None = Field(
        default=None, ge=0, description="Cosignatures a checkpoint needs (default: every witness)"
    )
    anchor_poll_seconds: float = Field(default=2.0, gt=0, description="How often anchors run")
    anchor_backoff_seconds: float = Field(
        default=5.0,
        gt=0,
        description="First retry delay for a TSA or witness that failed; "
        "doubles each failure, at most 10 minutes",
    )
    anchor_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    anchor_yield_events: int = Field(
        default=5000,
        ge=0,
        description="Anchoring waits while the sealer is more than this many events behind "
        "the log (a catch-up), so sealing keeps its pace; it fetches what is missing after",
    )
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_backoff_seconds: float = Field(
        default=10.0, gt=0, description="First retry delay; doubles each failure"
    )
    webhook_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="The retry delay doubles up to this"
    )
    min_free_disk_mb: int = Field(
        default=64,
        ge=0,
        description="/readyz fails when the SQLite database's disk has less free than this",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Each delivery's request timeout"
    )
    environment: Literal["development", "test", "production"] = "development"
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="JSON lines, or readable lines (auto: readable on a terminal)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics")
    metrics_token: SecretStr | None = Field(
        default=None, description="If set, /metrics wants `Authorization: Bearer <token>`"
    )
    metrics_address: str | None = Field(
        default=None,
        description="host:port to serve metrics on instead of the API's /metrics (e.g. an "
        "interface only the monitoring network reaches)",
    )
    pg_bin_dir: Path | None = Field(
        default=None,
        description="Folder with pg_dump and pg_restore (default: PATH, then the newest "
        "/usr/lib/postgresql/*/bin)",
    )
    otel_tracing: bool = Field(
        default=False, description="OpenTelemetry traces of requests and SQL (needs [tracing])"
    )
    otel_exporter: Literal["otlp", "console"] = Field(
        default="otlp",
        description="Where spans go: OTLP over HTTP (OTEL_EXPORTER_OTLP_*) or stderr",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs console session cookies (at least 32 characters); without it a "
        "random one is kept in <keys dir>/console-session.secret (required in production)",
    )
    session_hours: float = Field(
        default=8.0, gt=0, le=24 * 7, description="A console sign-in lasts this long"
    )
    # Serving (issue 15: reads at the ceiling).
    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long a process trusts what it last read of an API key (0: read the "
        "key table on every request). A key revoked elsewhere is refused within this time; "
        "in the process that revoked it, at once",
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="`fapiao serve`: server processes answering HTTP"
    )
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn", description="`fapiao serve`: the HTTP server (granian is optional)"
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        scheme = v.split(":", 1)[0]
        if scheme not in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(
                f"FAPIAO_DATABASE_URL must start with sqlite:/// or postgresql://, got {scheme}:"
            )
        if scheme == "sqlite":
            url = make_url(v)
            if url.database and url.database != ":memory:":
                v = url.set(database=str(_absolute(Path(url.database)))).render_as_string()
        return v

    @field_validator("data_dir", "attachments_dir", "keys_dir")
    @classmethod
    def _resolved(cls, v: Path | None) -> Path | None:
        # Absolute once, at startup: a later chdir (or running from another folder) cannot
        # point the process at a different ledger.
        return None if v is None else _absolute(v)

    @model_validator(mode="after")
    def _reachable_quorum(self) -> Settings:
        if self.witness_quorum is not None and self.witness_quorum > len(self.witnesses):
            raise ValueError(
                f"FAPIAO_WITNESS_QUORUM={self.witness_quorum} needs at least that many "
                f"witnesses, but FAPIAO_WITNESSES names {len(self.witnesses)}"
            )
        return self

    @field_validator("read_database_url")
    @classmethod
    def _replica(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if v.split(":", 1)[0] not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError("FAPIAO_READ_DATABASE_URL must be a postgresql:// replica")
        return v

    @field_validator("tenant_databases")
    @classmethod
    def _cells(cls, v: dict[str, str]) -> dict[str, str]:
        routed = {}
        for code, url in v.items():
            try:
                routed[code.strip().upper()] = str(cls._known_scheme(url))
            except ValueError:
                raise ValueError(
                    f"FAPIAO_TENANT_DATABASES: {code}: a sqlite:/// or postgresql:// URL"
                ) from None
        return routed

    @property
    def read_url(self) -> URL | None:
        if self.read_database_url is None:
            return None
        return make_url(self.read_database_url).set(drivername="postgresql+psycopg")

    def for_tenant(self, tenant_id: str) -> Settings:
        """The settings of the database holding this tenant's ledger (its cell)."""
        url = self.tenant_databases.get(tenant_id.strip().upper())
        if url is None or url == self.database_url:
            return self
        return self.cell(url)

    def cell(self, url: str) -> Settings:
        """Another database's settings (its replica, if any, is not this one's)."""
        return self.model_copy(update={"database_url": url, "read_database_url": None})

    @property
    def tsa_list(self) -> list[str]:
        return [u for u in self.tsa_urls.replace(",", " ").split() if u]

    @property
    def origin(self) -> str:
        """This database's log origin in checkpoints: FAPIAO_LOG_ORIGIN, or a name under it
        for a database tenants are routed to (each cell is a log of its own), the same in
        every process that serves it."""
        if self.database_url is not None and self.database_url in self.tenant_databases.values():
            name = make_url(self.database_url).database or "cell"
            return f"{self.log_origin}/{Path(name).stem}"
        return self.log_origin

    def cells(self) -> list[Settings]:
        """This database's settings first, then one per other database in the routing."""
        urls = dict.fromkeys(u for u in self.tenant_databases.values() if u != self.database_url)
        return [self, *(self.cell(u) for u in urls)]

    @field_validator("metrics_address")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("FAPIAO_METRICS_ADDRESS must be host:port, e.g. 10.0.0.5:9464")
        return v

    def metrics_bind(self) -> tuple[str, int] | None:
        if self.metrics_address is None:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("signing_key")
    @classmethod
    def _seed(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            try:
                ok = len(bytes.fromhex(v.get_secret_value())) == 32
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("FAPIAO_SIGNING_KEY must be 64 hex digits (an Ed25519 seed)")
        return v

    @field_validator("session_secret")
    @classmethod
    def _session_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("FAPIAO_SESSION_SECRET must have at least 32 characters")
        return v

    @property
    def url(self) -> URL:
        if self.database_url is None:
            return make_url(f"sqlite:///{self.data_dir / 'ledger.db'}")
        url = make_url(self.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return url

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @property
    def linger_seconds(self) -> float:
        if self.projection_linger_seconds is not None:
            return self.projection_linger_seconds
        return 0.0 if self.is_postgres else 0.05

    @property
    def sqlite_path(self) -> Path:
        assert not self.is_postgres and self.url.database
        return Path(self.url.database)

    def describe(self) -> str:
        """The store, safe to print (no password)."""
        return self.url.render_as_string(hide_password=True)

    def eventsourcing_env(self) -> dict[str, str]:
        """The library's environment. CREATE_TABLE is off everywhere: alembic owns the tables."""
        env = {
            "CREATE_TABLE": "no",
            "SINGLE_ROW_TRACKING": "y",
            "IS_SNAPSHOTTING_ENABLED": "no",
        }
        if self.is_postgres:
            url = self.url
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                APPLICATION_RECORDER_TOPIC="infrastructure.store.recorders:LedgerPostgresRecorder",
                POSTGRES_DBNAME=url.database or "",
                POSTGRES_HOST=url.host or "127.0.0.1",
                POSTGRES_PORT=str(url.port or 5432),
                POSTGRES_USER=url.username or "postgres",
                POSTGRES_PASSWORD=url.password or "",
                POSTGRES_SCHEMA="public",
                POSTGRES_POOL_SIZE=str(self.pool_size),
                POSTGRES_MAX_OVERFLOW=str(self.max_overflow),
                POSTGRES_LOCK_TIMEOUT=str(self.lock_timeout_seconds),
                POSTGRES_CONNECT_TIMEOUT="10",
                POSTGRES_PRE_PING="y",
            )
        else:
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                APPLICATION_RECORDER_TOPIC="infrastructure.store.recorders:LedgerSQLiteRecorder",
                SQLITE_DBNAME=str(self.sqlite_path),
                SQLITE_LOCK_TIMEOUT="30",
            )
        return env
