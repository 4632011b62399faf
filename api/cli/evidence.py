"""`fapiao evidence ...`: evidence bundles: export, and verify offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from api.cli.root import Operator, Tenant, cli_actor, console, err, services_for, tenant_code

evidence_app = typer.Typer(
    help="Evidence bundles: export, and verify offline.", no_args_is_help=True
)


@evidence_app.command("export")
def evidence_export(
    tenant: Tenant,
    invoice: Annotated[list[str], typer.Option(help="Invoice id or key (repeat)")],
    out: Annotated[Path, typer.Option(help="Where to write the .zip")],
    operator: Operator = None,
) -> None:
    """Write a BagIt evidence bundle for these invoices, with a progress bar; the export is
    recorded in the access log under the operator's name."""
    from infrastructure.evidence.bundle import export_bundle

    by = cli_actor(operator)
    with services_for(tenant=tenant) as services:
        tenant = tenant_code(services, tenant)
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
        services.access_log.record_operator(
            tenant,
            by.actor,
            "evidence-export",
            ",".join(str(i) for i in ids[:20]) + ("..." if len(ids) > 20 else ""),
            by.occurred_at,
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
