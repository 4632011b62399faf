"""`fapiao reconcile|ledger|evidence`: platform exports, the sealed log, evidence bundles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.root import CliError, app, cli_actor, console, err, services_for
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import ExportReader, sha256_of

ledger_app = typer.Typer(
    help="The tamper-evident log: verify, checkpoint, keys.", no_args_is_help=True
)
evidence_app = typer.Typer(
    help="Evidence bundles: export, and verify offline.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")
app.add_typer(evidence_app, name="evidence")


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
                cli_actor(),
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
    from infrastructure.evidence.bundle import export_bundle

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
    from infrastructure.evidence.bundle import verify_bundle

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
