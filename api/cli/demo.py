"""`fapiao demo`, and the demo tenant that `fapiao serve --demo` loads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from api.cli.root import CliError, console

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services


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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from infrastructure.demo.simulated_platform import run_demo

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
    from application.demo.scenario import SimulationReport

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


DEMO_KEY_FILE = "demo-key.txt"


def _demo_key(services: Services, tenant: str) -> str:
    """The demo key kept in the data folder (same key on every restart), or a new one."""
    import os

    path = services.settings.data_dir / DEMO_KEY_FILE
    if path.exists():
        kept = path.read_text(encoding="utf-8").strip()
        principal = services.keys.authenticate(kept)
        if principal is not None and principal.tenant_id == tenant:
            return kept
    _, secret = services.keys.create_key(tenant, "clerk,auditor", "demo key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    path.with_suffix(".tmp").replace(path)
    return secret


def load_demo_tenant(services: Services, host: str, port: int) -> None:
    from application.demo.scenario import DEMO_NAME, DEMO_TENANT, load_demo

    tenant = services.keys.ensure_tenant(DEMO_TENANT, DEMO_NAME)
    if services.reader.counts(tenant) or services.ledger.recorder.max_notification_id():
        console.print("demo tenant already has data; not loading it again")
    else:
        with console.status("loading demo invoices..."):
            report = load_demo(services.ledger, tenant)
        services.worker("invoice_status").catch_up()
        console.print(f"demo: {report.invoices} invoices for {DEMO_NAME} ({tenant})")
    secret = _demo_key(services, tenant)
    # Plain print: a key must survive copy and paste, so no wrapping or markup.
    print(f"demo API key (clerk, auditor): {secret}")
    print(
        f"try: curl -H 'Authorization: Bearer {secret}' "
        f"'http://{host}:{port}/v1/invoices?status=missing&limit=5'",
        flush=True,
    )
    print(f"or sign in to the console with that key: http://{host}:{port}/console", flush=True)
