"""The `fapiao` command line: serve, migrate, worker, keys, projections, reconcile, demo, policy.

Errors print one readable line and exit non-zero; long work shows a progress bar.
"""

from __future__ import annotations

import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli_cases import complaint_app, lost_app, queue_app, reentry_app
from application.demo import DEMO_NAME, DEMO_TENANT, load_demo
from application.errors import ApplicationError
from application.ledger import SHANGHAI
from application.policy import PolicyView
from domain.base import Provenance, Source
from domain.errors import DomainError
from infrastructure import migrate as migrations
from infrastructure.bootstrap import Services, build_services
from infrastructure.exports import ExportReader, sha256_of
from infrastructure.keys import KeyStoreError
from infrastructure.settings import Settings

app = typer.Typer(
    help="fapiao-ledger: the trusted record of every invoice's journey to the tax platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
projections_app = typer.Typer(help="Projections: status and rebuild.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(projections_app, name="projections")
app.add_typer(reentry_app, name="reentry")
app.add_typer(complaint_app, name="complaint")
app.add_typer(lost_app, name="lost")
app.add_typer(queue_app, name="queue")
ledger_app = typer.Typer(
    help="The tamper-evident log: verify, checkpoint, keys.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")
evidence_app = typer.Typer(
    help="Evidence bundles: export, and verify offline.", no_args_is_help=True
)
app.add_typer(evidence_app, name="evidence")
policy_app = typer.Typer(
    help="Tenant policy: acknowledgement window, maintenance windows.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
console = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A failure to report as one line."""


@contextmanager
def services_for(settings: Settings | None = None) -> Iterator[Services]:
    settings = settings or Settings()
    revision = migrations.current_revision(settings)
    if revision != migrations.head_revision(settings):
        raise CliError(
            f"the database at {settings.describe()} is at migration {revision}; "
            "run `fapiao migrate` first"
        )
    services = build_services(settings)
    try:
        yield services
    finally:
        services.close()


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

    from api.app import create_app

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

    from infrastructure.demo_platform import run_demo

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
    from application.simulation import SimulationReport

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


def _one_line(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(
            f"FAPIAO_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in e.errors()
        )
    return str(e)


@app.command()
def reconcile(
    file: Annotated[
        Path,
        typer.Argument(
            help="The platform's export (CSV or XLSX)", exists=True, dir_okay=False, readable=True
        ),
    ],
    tenant: Annotated[str, typer.Option(help="The tenant's unified social credit code")],
    direction: Annotated[
        str, typer.Option(help="outbound (issued) or inbound (received)")
    ] = "outbound",
    encoding: Annotated[str | None, typer.Option(help="Override detection: utf-8, gb18030")] = None,
    columns: Annotated[Path | None, typer.Option(help="JSON file {header text: field}")] = None,
    findings: Annotated[
        Path | None, typer.Option(help="Write the findings here (.csv/.json)")
    ] = None,
) -> None:
    """Reconcile a platform export against the ledger; the same file again changes nothing."""
    import json

    mapping = None
    if columns:
        try:
            mapping = json.loads(columns.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CliError(f"columns: cannot read {columns}: {e}") from None
    with services_for() as services:
        try:
            reader = ExportReader(file, encoding)
        except LookupError:
            raise CliError(f"encoding: {encoding!r} is not an encoding") from None
        columns_ = (TextColumn(f"reconciling {file.name}"), BarColumn(), TimeRemainingColumn())
        with Progress(*columns_, console=console) as progress:
            task = progress.add_task("rows", total=reader.size or 1)
            result = services.reconciliation.reconcile(
                tenant,
                reader,
                sha256_of(file),
                file.name,
                _cli_actor(),
                direction,
                mapping,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        table = Table("class", "count")
        for cls, n in sorted(result.counts.items()):
            table.add_row(cls, str(n))
        console.print(table)
        replay = " (this file was reconciled before: nothing changed)" if result.replayed else ""
        console.print(
            f"run {result.run_id}: {result.rows} rows, period {result.period_from} to "
            f"{result.period_to}, {result.events_caused} events caused{replay}"
        )
        if findings:
            _write_findings(services, result.run_id, findings)
            console.print(f"findings written to {findings}")


def _write_findings(services: Services, run_id: UUID, path: Path) -> None:
    import csv
    import json

    rows = services.reconciliation_store.findings(run_id)
    with path.open(
        "w", encoding="utf-8-sig" if path.suffix == ".csv" else "utf-8", newline=""
    ) as f:
        if path.suffix == ".csv":
            writer = csv.writer(f)
            writer.writerow(
                ["class", "line", "invoice_key", "differences", "event", "position", "note"]
            )
            for r in rows:
                writer.writerow(
                    [
                        r.cls,
                        r.line or "",
                        r.invoice_key or "",
                        json.dumps(list(r.differences), ensure_ascii=False),
                        r.event or "",
                        r.position or "",
                        r.note,
                    ]
                )
        else:
            json.dump(
                [
                    {
                        "class": r.cls,
                        "line": r.line,
                        "invoice_key": r.invoice_key,
                        "differences": list(r.differences),
                        "event": r.event,
                        "position": r.position,
                        "note": r.note,
                    }
                    for r in rows
                ],
                f,
                ensure_ascii=False,
                indent=1,
            )


@app.command("callback-secret")
def callback_secret(tenant: Annotated[str, typer.Option(help="The tenant's code")]) -> None:
    """Issue a new HMAC secret for the tenant's provider callbacks (the old one stops working)."""
    with services_for() as services:
        code = services.keys.ensure_tenant(tenant, "")
        secret = services.callbacks.rotate_secret(code)
    print(f"callback secret for {code}: {secret}", flush=True)


def _all_rows(services: Services) -> Iterator[Any]:
    position = -(2**62)  # every row, whatever position someone gave it
    while True:
        rows = services.ledger.event_log.select_rows(position, 5000)
        if not rows:
            return
        yield from rows
        position = rows[-1].position


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every leaf from the stored events; check the tree and the latest checkpoint.
    Names every position that differs; exit 1 if any does."""
    with services_for() as services:
        services.bring_up_to_date("seal")
        report = services.merkle.verify(_all_rows(services))
    console.print(
        f"{report.leaves} sealed events, {report.unsealed} not sealed yet; latest "
        f"checkpoint covers {report.checkpoint_size or 0}"
    )
    if report.ok:
        console.print("the ledger matches its seal and its signed checkpoint")
        return
    for failure in report.failures:
        err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1)


@ledger_app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Seal what is new and sign a checkpoint now."""
    with services_for() as services:
        services.bring_up_to_date("seal")
        row = services.merkle.checkpoint_now()
    if row is None:
        raise CliError("the ledger is empty: nothing to checkpoint")
    print(row["note"], end="")


@ledger_app.command("rotate-key")
def ledger_rotate_key() -> None:
    """Add a new checkpoint signing key; older public keys stay published."""
    with services_for() as services:
        key = services.merkle.signer.rotate()
    print(f"new signing key {key.name} ({key.key_id}): {key.vkey}")


@ledger_app.command("keys")
def ledger_keys() -> None:
    """The published verifier keys (C2SP note format)."""
    with services_for() as services:
        for key in services.merkle.signer.public_keys():
            print(key.vkey)


@evidence_app.command("export")
def evidence_export(
    tenant: Annotated[str, typer.Option(help="The tenant's code")],
    invoice: Annotated[list[str], typer.Option(help="Invoice id or key (repeat)")],
    out: Annotated[Path, typer.Option(help="Where to write the .zip")],
) -> None:
    """Write a BagIt evidence bundle for these invoices, with a progress bar."""
    from infrastructure.evidence import export_bundle

    with services_for() as services:
        ids = [services.ledger.resolve_invoice_id(tenant, ref) for ref in invoice]
        columns_ = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns_, console=console) as progress:
            task = progress.add_task("invoices", total=len(ids))
            report = export_bundle(
                services,
                tenant,
                ids,
                out,
                lambda done, total: progress.update(task, completed=done),
            )
    console.print(
        f"{report.path}: {report.invoices} invoices, {report.events} events, "
        f"{report.attachments} attachments, against checkpoint {report.tree_size}"
    )


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    public_key: Annotated[
        Path | None,
        typer.Option(help="A file with the log's verifier key (name+keyid+base64) you trust"),
    ] = None,
) -> None:
    """Check a bundle offline (no database): checksums, leaves, proofs, signature, replay."""
    from infrastructure.evidence import verify_bundle

    vkey = public_key.read_text(encoding="utf-8").strip() if public_key else None
    result = verify_bundle(bundle, vkey)
    if result.failures:
        for failure in result.failures:
            err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(
        f"OK: {result.invoices} invoices, {result.events} events; BagIt checksums, "
        f"leaves, inclusion proofs, the checkpoint signature ({result.key_source}) "
        "and the replayed states all verify",
        highlight=False,
    )


def _cli_actor() -> Provenance:
    user = os.environ.get("USER") or getpass.getuser()
    return Provenance(f"cli:{user}", Source.CLI, datetime.now(UTC))


def _aware(field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{field}: {text!r} is not an ISO 8601 time") from None
    # A time without an offset is Beijing time: that is what clerks read on the platform.
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


def _print_policy(view: PolicyView) -> None:
    console.print(
        f"{view.tenant_id}: acknowledgement window {view.ack_window.total_seconds() / 3600:g} h"
    )
    table = Table("window", "starts (Beijing)", "ends (Beijing)", "note")
    for w in view.windows:
        table.add_row(
            str(w.window_id),
            f"{w.starts_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}",
            f"{w.ends_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}",
            w.note,
        )
    console.print(table)


Tenant = Annotated[str, typer.Option(help="The tenant's unified social credit code")]


@policy_app.command("show")
def policy_show(tenant: Tenant) -> None:
    """The acknowledgement window and maintenance windows in force."""
    with services_for() as services:
        _print_policy(services.policies.get_policy(tenant))


@policy_app.command("ack-window")
def policy_ack_window(tenant: Tenant, hours: Annotated[float, typer.Option(help="Hours")]) -> None:
    """Set the acknowledgement window for uploads from now on."""
    with services_for() as services:
        _print_policy(
            services.policies.set_ack_window(tenant, timedelta(hours=hours), _cli_actor())
        )


@policy_app.command("review-days")
def policy_review_days(
    tenant: Tenant, days: Annotated[int, typer.Option(help="Working days")]
) -> None:
    """Working days within which supplementary-entry applications must be decided."""
    with services_for() as services:
        view = services.policies.set_review_days(tenant, days, _cli_actor())
        _print_policy(view)
        console.print(f"review deadline: {view.review_working_days} working days")


@policy_app.command("maintenance-add")
def policy_maintenance_add(
    tenant: Tenant,
    starts: Annotated[str, typer.Option(help="ISO time; no offset means Beijing time")],
    ends: Annotated[str, typer.Option(help="ISO time; no offset means Beijing time")],
    note: Annotated[str, typer.Option(help="What the platform announced")] = "",
) -> None:
    """Declare a platform maintenance window: its time does not count toward any window."""
    with services_for() as services:
        _, view = services.policies.declare_maintenance(
            tenant, _aware("starts", starts), _aware("ends", ends), note, _cli_actor()
        )
        _print_policy(view)


@policy_app.command("maintenance-withdraw")
def policy_maintenance_withdraw(tenant: Tenant, window_id: str) -> None:
    """Withdraw a maintenance window declared by mistake."""
    try:
        wid = UUID(window_id)
    except ValueError:
        raise CliError(f"window_id: {window_id!r} is not a window id") from None
    with services_for() as services:
        _print_policy(services.policies.withdraw_maintenance(tenant, wid, _cli_actor()))


def main() -> None:
    try:
        app()
    except ValidationError as e:
        err.print(f"error: {_one_line(e)}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (CliError, DomainError, ApplicationError, KeyStoreError, ValueError) as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - one readable line, not a traceback
        err.print(f"error: {type(e).__name__}: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
