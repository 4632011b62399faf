"""`fapiao migrate|serve|worker|projections`: running the service."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.demo import load_demo_tenant
from api.cli.root import CliError, console, services_for
from infrastructure.bootstrap import build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate as migrations


def migrate(
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION instead")] = False,
) -> None:
    """Apply the alembic migrations (both stores)."""
    settings = Settings()
    if down:
        migrations.downgrade(settings, revision)
    else:
        migrations.upgrade(settings, revision)
    console.print(
        f"{settings.describe()} is at migration {migrations.current_revision(settings) or 'base'}"
    )


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    demo: Annotated[bool, typer.Option(help="Load a demo tenant and print its API key")] = False,
    worker: Annotated[bool, typer.Option(help="Run the projection worker in-process")] = True,
) -> None:
    """Migrate, then serve the API (SQLite in .fapiao/ unless FAPIAO_DATABASE_URL is set)."""
    import uvicorn

    from api.http.app import create_app

    settings = Settings()
    migrations.upgrade(settings)
    services = build_services(settings)
    if demo:
        load_demo_tenant(services, host, port)
    console.print(f"store: {settings.describe()}")
    console.print(f"API docs: http://{host}:{port}/docs")
    try:
        uvicorn.run(
            create_app(settings, services=services, run_workers=worker),
            host=host,
            port=port,
            log_level="info",
        )
    finally:
        services.close()


def worker(
    projection: Annotated[
        list[str] | None,
        typer.Option(help="Only these projections (then no ticker or webhook deliverer)"),
    ] = None,
) -> None:
    """Run projection workers, the acknowledgement ticker and the webhook deliverer until
    interrupted. Start several: one is active per projection, the others stand by."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with services_for() as services:
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


projections_app = typer.Typer(help="Projections: status and rebuild.", no_args_is_help=True)


@projections_app.command("status")
def projections_status() -> None:
    """Position, lag, dead letters and the active runner of each projection."""
    with services_for() as services:
        rows = services.projection_status()
    table = Table("projection", "position", "head", "lag", "dead letters", "active runner")
    for r in rows:
        table.add_row(
            r["projection"],
            str(r["position"]),
            str(r["head"]),
            str(r["lag"]),
            str(r["dead_letters"]),
            r["active_runner"] or "none",
        )
    console.print(table)


@projections_app.command("rebuild")
def projections_rebuild(name: str) -> None:
    """Empty a projection and replay every event into it, with a progress bar."""
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
