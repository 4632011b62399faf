"""`fapiao migrate|serve|demo|worker|keys|projections|callback-secret`: running the service."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.root import CliError, app, console, services_for
from application.demo.scenario import DEMO_NAME, DEMO_TENANT, load_demo
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate as migrations

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
projections_app = typer.Typer(help="Projections: status and rebuild.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(projections_app, name="projections")


@app.command()
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


@app.command()
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
        _load_demo(services, host, port)
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


def _load_demo(services: Services, host: str, port: int) -> None:
    tenant = services.keys.ensure_tenant(DEMO_TENANT, DEMO_NAME)
    if services.reader.counts(tenant) or services.ledger.recorder.max_notification_id():
        console.print("demo tenant already has data; not loading it again")
    else:
        with console.status("loading demo invoices..."):
            report = load_demo(services.ledger, tenant)
        services.worker("invoice_status").catch_up()
        console.print(f"demo: {report.invoices} invoices for {DEMO_NAME} ({tenant})")
    key_id, secret = services.keys.create_key(tenant, "clerk,auditor", "demo key")
    # Plain print: a key must survive copy and paste, so no wrapping or markup.
    print(f"demo API key (clerk, auditor): {secret}")
    print(
        f"try: curl -H 'Authorization: Bearer {secret}' "
        f"'http://{host}:{port}/v1/invoices?status=missing&limit=5'",
        flush=True,
    )


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=5, max=31, help="Days of October 2026 to simulate")] = 30,
    seed: Annotated[int, typer.Option(help="Same seed, same month")] = 7,
    loss: Annotated[
        float, typer.Option(min=0, max=0.5, help="Share of uploads the platform silently loses")
    ] = 0.03,
    reject: Annotated[float, typer.Option(min=0, max=0.5, help="Share it rejects")] = 0.02,
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo's database in this folder")
    ] = None,
) -> None:
    """A month of invoices through a lossy simulated tax platform, and what the ledger found."""
    import tempfile

    from infrastructure.demo.runner import run_demo

    with tempfile.TemporaryDirectory(prefix="fapiao-demo-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        columns_ = (
            TextColumn("simulating the month hour by hour"),
            BarColumn(),
            MofNCompleteColumn(),
        )
        with Progress(*columns_, console=console) as progress:
            task = progress.add_task("hours", total=(days + 3) * 24)
            report = run_demo(
                workdir,
                days=days,
                seed=seed,
                loss_rate=loss,
                reject_rate=reject,
                progress=lambda done, total: progress.update(task, completed=done),
            )
    _print_demo(report)
    if report.undetected or report.false_alarms:
        raise CliError("the ledger's findings differ from the platform's truth")


def _print_demo(report: object) -> None:
    from application.demo.simulation import SimulationReport

    assert isinstance(report, SimulationReport)
    last = report.first_day + timedelta(days=report.days - 1)
    console.print(
        f"\n北京的发票北京系统里没有: {report.first_day} to {last} through a lossy platform"
    )
    table = Table("", "count")
    for label, n in [
        ("invoices issued", report.invoices),
        ("uploads", report.uploads),
        ("refused during maintenance, re-uploaded", report.refused_in_maintenance),
        ("acknowledged by the platform", report.acknowledged),
        ("rejected by the platform", report.rejected),
        ("silently lost by the platform (its own truth)", len(report.lost)),
        ("marked missing by the ledger", len(report.missing)),
    ]:
        table.add_row(label, str(n))
    console.print(table)
    lost = Table("lost invoice", "found by the ledger", title="what the platform lost")
    for key in sorted(report.lost):
        lost.add_row(key, report.missing.get(key, "NOT FOUND"))
    console.print(lost)
    if report.reconciliation:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.reconciliation.counts.items()))
        console.print(f"month-end reconciliation with the platform's export: {counts}")
    console.print(
        f"detected {len(report.lost) - len(report.undetected)} of {len(report.lost)} "
        f"lost invoices; {len(report.false_alarms)} false alarms"
    )


@app.command()
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


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant's unified social credit code")],
    roles: Annotated[
        str,
        typer.Option(help="Comma-separated: clerk, reviewer, approver, auditor, compliance, admin"),
    ],
    tenant_name: Annotated[str, typer.Option(help="Name, when the tenant is new")] = "",
    label: Annotated[str, typer.Option(help="What the key is for")] = "",
) -> None:
    """Create an API key (the tenant too, if new). The key is printed once."""
    with services_for() as services:
        tenant_id = services.keys.ensure_tenant(tenant, tenant_name)
        key_id, secret = services.keys.create_key(tenant_id, roles, label)
    print(f"key {key_id} for {tenant_id}: {secret}", flush=True)
    console.print("store it now: only its hash is kept")


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """List API keys (never their secrets)."""
    with services_for() as services:
        rows = services.keys.list_keys(tenant)
    table = Table("key", "tenant", "roles", "label", "created (UTC)", "revoked")
    for k in rows:
        table.add_row(
            k.key_id,
            k.tenant_id,
            k.roles,
            k.label,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    with services_for() as services:
        services.keys.revoke(key_id)
    console.print(f"revoked {key_id}")


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


@app.command("callback-secret")
def callback_secret(tenant: Annotated[str, typer.Option(help="The tenant's code")]) -> None:
    """Issue a new HMAC secret for the tenant's provider callbacks (the old one stops working)."""
    with services_for() as services:
        code = services.keys.ensure_tenant(tenant, "")
        secret = services.callbacks.rotate_secret(code)
    print(f"callback secret for {code}: {secret}", flush=True)
