"""`fapiao reconcile` and `fapiao callback-secret`: platform exports and provider callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer
from rich.table import Table

from api.cli.root import (
    CliError,
    Operator,
    Tenant,
    cli_actor,
    console,
    date_option,
    services_for,
    tenant_code,
)

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services


def reconcile(
    file: Annotated[
        Path,
        typer.Argument(
            help="The platform's export (CSV or XLSX)", exists=True, dir_okay=False, readable=True
        ),
    ],
    tenant: Tenant,
    direction: Annotated[
        str, typer.Option(help="outbound (issued) or inbound (received)")
    ] = "outbound",
    encoding: Annotated[str | None, typer.Option(help="Override detection: utf-8, gb18030")] = None,
    columns: Annotated[Path | None, typer.Option(help="JSON file {header text: field}")] = None,
    findings: Annotated[
        Path | None, typer.Option(help="Write the findings here (.csv/.json)")
    ] = None,
    period_from: Annotated[
        str | None, typer.Option(help="First issue date the export covers (YYYY-MM-DD)")
    ] = None,
    period_to: Annotated[
        str | None, typer.Option(help="Last issue date it covers; default: the file's dates")
    ] = None,
    operator: Operator = None,
) -> None:
    """Reconcile a platform export against the ledger; the same file again changes nothing."""
    import json

    from domain.monitoring.platform_export import check_period

    first, last = date_option("period_from", period_from), date_option("period_to", period_to)
    if (first is None) != (last is None):
        raise CliError("period_to: give both ends of the period, or neither")
    if first and last and last < first:
        raise CliError("period_to: must not be before period_from")
    period = check_period(first, last) if first and last else None
    by = cli_actor(operator)

    mapping = None
    if columns:
        try:
            mapping = json.loads(columns.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise CliError(f"columns: cannot read {columns}: {type(e).__name__}") from None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from infrastructure.monitoring.platform_export_reader import PlatformExportReader, sha256_of

    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        try:
            reader = PlatformExportReader(file, encoding)
        except (LookupError, ValueError):
            raise CliError(f"encoding: {encoding!r} is not an encoding") from None
        columns_ = (TextColumn(f"reconciling {file.name}"), BarColumn(), TimeRemainingColumn())
        with Progress(*columns_, console=console) as progress:
            task = progress.add_task("rows", total=reader.size or 1)
            result = services.reconciliation.reconcile(
                code,
                reader,
                sha256_of(file),
                file.name,
                by,
                direction,
                mapping,
                period,
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


def callback_secret(tenant: Tenant) -> None:
    """Issue a new HMAC secret for the tenant's provider callbacks (the old one stops working)."""
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        secret = services.callbacks.rotate_secret(code)
    print(f"callback secret for {code}: {secret}", flush=True)
