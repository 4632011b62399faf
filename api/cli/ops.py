"""`fapiao migrate|serve|worker|projections`: running the service."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer
from rich.table import Table

from api.cli.demo import load_demo_tenant
from api.cli.root import CliError, console, services_for

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services
    from infrastructure.settings import Settings

# infrastructure.metrics.SHARED_DIR_ENV, named here so as not to import prometheus_client
# before it is set (the library reads it once, when first imported).
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="json (one JSON object per line), console, or auto (console on a terminal); "
        "default FAPIAO_LOG_FORMAT",
    ),
]


def _logging(settings: Settings, log_format: str | None) -> None:
    from infrastructure.structured_logs import LogFormat, configure_logging

    fmt = log_format or settings.log_format
    if fmt not in ("auto", "json", "console"):
        raise CliError(f"log-format: {fmt!r} is not json, console or auto")
    configure_logging(cast(LogFormat, fmt), settings.log_level)


def _serve_metrics(services: Services, host: str, port: int) -> None:
    """Metrics on a listener of their own (a daemon thread; it ends with the process)."""
    from prometheus_client import start_http_server

    start_http_server(port, host, registry=services.metrics.registry)
    console.print(f"metrics: http://{host}:{port}/metrics")


def migrate(
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION instead")] = False,
) -> None:
    """Apply the alembic migrations (both stores; every database tenants are routed to)."""
    from infrastructure.settings import Settings
    from infrastructure.store import migrate as migrations

    for settings in Settings().cells():
        if down:
            migrations.downgrade(settings, revision)
        else:
            migrations.upgrade(settings, revision)
        current = migrations.current_revision(settings) or "base"
        console.print(f"{settings.describe()} is at migration {current}")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    demo: Annotated[bool, typer.Option(help="Load a demo tenant and print its API key")] = False,
    worker: Annotated[bool, typer.Option(help="Run the projection worker in-process")] = True,
    log_format: LogFormatOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes answering HTTP (default FAPIAO_WORKERS, 1); with several, "
            "the projection workers and timers run once, in the supervising process",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="uvicorn or granian (default FAPIAO_SERVER, uvicorn)"),
    ] = None,
) -> None:
    """Migrate, then serve the API (SQLite in the data folder unless FAPIAO_DATABASE_URL is set)."""
    from infrastructure.settings import Settings

    settings = Settings()
    processes = workers or settings.workers
    with _shared_metrics(processes > 1 or (server or settings.server) != "uvicorn"):
        _serve(settings, host, port, demo, worker, log_format, processes, server)


@contextlib.contextmanager
def _shared_metrics(several: bool) -> Iterator[None]:
    """With several server processes, a fresh folder for the metrics they all count into
    (PROMETHEUS_MULTIPROC_DIR, set before prometheus_client is first imported here, inherited
    by the workers), removed when they stop; one that the operator set is used as it is."""
    if not several or os.environ.get(SHARED_DIR_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="fapiao-metrics-")
    os.environ[SHARED_DIR_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(SHARED_DIR_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _serve(
    settings: Settings,
    host: str,
    port: int,
    demo: bool,
    worker: bool,
    log_format: str | None,
    processes: int,
    server: str | None,
) -> None:
    from api.cli.serving import APP_FACTORY, ServerUnavailableError, export_for_workers, run_server
    from api.http.app import create_app
    from infrastructure.bootstrap import build_cells
    from infrastructure.store import migrate as migrations

    if "FAPIAO_POOL_KEEP" not in os.environ:
        # A server keeps the connections its pools open: reconnecting per request under load
        # was its p99. (export_for_workers passes the choice on to spawned workers.)
        settings = settings.model_copy(update={"pool_keep": True})
    chosen = server or settings.server
    if chosen not in ("uvicorn", "granian"):
        raise CliError(f"server: {chosen!r} is not uvicorn or granian")
    _logging(settings, log_format)
    for cell in settings.cells():
        migrations.upgrade(cell)
    cells = build_cells(settings)
    services = cells.default
    if demo:
        load_demo_tenant(services, host, port)
    console.print(f"store: {settings.describe()}")
    print(f"console: http://{host}:{port}/console", flush=True)
    console.print(f"API docs: http://{host}:{port}/docs")
    bind = settings.metrics_bind()
    if settings.metrics_enabled and bind:
        _serve_metrics(services, *bind)
    one = processes == 1 and chosen == "uvicorn"
    if not one:
        # The workers build their own app and services from the environment; this process
        # supervises them and runs the background work once (none in the workers).
        export_for_workers(settings, log_format or settings.log_format)
        if worker:
            cells.start_workers()
        console.print(f"{chosen}: {processes} worker processes")
    try:
        run_server(
            create_app(settings, cells=cells, run_workers=worker) if one else APP_FACTORY,
            settings,
            host=host,
            port=port,
            workers=processes,
            server=cast("Literal['uvicorn', 'granian']", chosen),
        )
    except ServerUnavailableError as e:
        raise CliError(str(e)) from None
    finally:
        cells.close()


def worker(
    projection: Annotated[
        list[str] | None,
        typer.Option(help="Only these projections (then no ticker or webhook deliverer)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve this worker's metrics on this port"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for --metrics-port")] = "127.0.0.1",
    log_format: LogFormatOption = None,
) -> None:
    """Run projection workers, the acknowledgement ticker and the webhook deliverer until
    interrupted. Start several: one is active per projection, the others stand by."""
    from infrastructure.settings import Settings

    settings = Settings()
    _logging(settings, log_format)
    with services_for(settings) as services:
        bind = (metrics_host, metrics_port) if metrics_port is not None else None
        bind = bind or settings.metrics_bind()
        if settings.metrics_enabled and bind:
            _serve_metrics(services, *bind)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if projection:
            threads = [
                threading.Thread(target=services.worker(n).run, args=(stop,), daemon=True)
                for n in projection
            ]
            for t in threads:
                t.start()
            running = ", ".join(projection)
        else:
            services.start_workers()
            threads = []
            running = ", ".join(sorted(services.workers)) + ", ack ticker, webhook deliverer"
        console.print(f"running: {running} (Ctrl-C to stop)")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            stop.set()
        for t in threads:
            t.join(timeout=10)


projections_app = typer.Typer(
    help="Projections: status, dead letters and their replay, rebuild.", no_args_is_help=True
)


@projections_app.command("status")
def projections_status() -> None:
    """Position, lag, dead letters and the active runner of each projection."""
    with services_for() as services:
        rows = services.projection_status()
    table = Table(
        "projection", "position", "head", "lag", "dead letters", "retries", "active runner"
    )
    for r in rows:
        table.add_row(
            r["projection"],
            str(r["position"]),
            str(r["head"]),
            str(r["lag"]),
            str(r["dead_letters"]),
            str(r["retries"]),
            r["active_runner"] or "none",
        )
    console.print(table)
    console.print("retries: failed batches retried by runners in this process")


@projections_app.command("replay-dead-letters")
def projections_replay_dead_letters(name: str) -> None:
    """Apply a projection's dead letters again (after a fix), while its workers run: those that
    apply are removed, the others keep their (updated) error. Exit 1 if some still fail."""
    with services_for() as services:
        replayed, failing = services.worker(name).replay_dead_letters()
    console.print(f"{name}: {replayed} replayed, {failing} still failing")
    if failing:
        raise typer.Exit(1)


@projections_app.command("dead-letters")
def projections_dead_letters(
    name: str, limit: int = typer.Option(20, min=1, max=1000, help="How many, newest first")
) -> None:
    """The events a projection set aside (poison: it could not apply them), with their errors."""
    with services_for() as services:
        rows = services.worker(name).dead_letters(limit)
    table = Table("position", "topic", "stream", "error", "failed at")
    for r in rows:
        table.add_row(
            str(r["position"]), r["topic"], r["originator_id"], r["error"], r["failed_at"]
        )
    console.print(table)


@projections_app.command("rebuild")
def projections_rebuild(name: str) -> None:
    """Empty a projection and replay every event into it, with a progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with services_for() as services:
        worker_ = services.worker(name)
        leadership = worker_.leadership()
        if not leadership.try_acquire():
            leadership.release()
            raise CliError(f"a worker is running projection {name}; stop it first")
        try:
            worker_.reset()
            head = worker_.head()
            columns = (
                TextColumn(f"rebuilding {name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(name, total=head or 1)
                worker_.catch_up(
                    lambda pos, total: progress.update(task, completed=pos, total=total or 1)
                )
        finally:
            leadership.release()
        console.print(
            f"{name} rebuilt to position {worker_.position()}; "
            f"{worker_.dead_letter_count()} dead letters"
        )
