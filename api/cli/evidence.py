"""`fapiao evidence ...`: evidence bundles: export, and verify offline.

`verify` exits 0 when everything verifies against a key you supplied, 3 when everything
verifies but only against the bundle's own key (UNTRUSTED), and 1 naming every failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.root import (
    CliError,
    Operator,
    Tenant,
    cli_actor,
    console,
    err,
    read_option_file,
    services_for,
    tenant_code,
)

evidence_app = typer.Typer(
    help="Evidence bundles: export, and verify offline.", no_args_is_help=True
)
UNTRUSTED_EXIT = 3


def _regular(path: Path, what: str) -> None:
    if not path.is_file():
        raise CliError(f"{what} {path}: not a regular file")


def _read(path: Path | None, what: str) -> str | None:
    return None if path is None else read_option_file(path, what)


@evidence_app.command("export")
def evidence_export(
    tenant: Tenant,
    out: Annotated[Path, typer.Option(help="Where to write the .zip")],
    invoice: Annotated[
        list[str] | None, typer.Option(help="Invoice id or key (repeat; duplicates are one)")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Or: every invoice in this status (up to 10,000)")
    ] = None,
    since_checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint note the inspector holds: add a consistency proof"),
    ] = None,
    operator: Operator = None,
) -> None:
    """Write a BagIt evidence bundle for these invoices; the export is recorded in the access
    log under the operator's name."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from application.ports import InvoiceFilter
    from domain.invoices.status import InvoiceStatus
    from infrastructure.evidence.bundle import ExportRequest, export_bundle, unique

    known = _read(since_checkpoint, "--since-checkpoint")
    by = cli_actor(operator)
    with services_for(tenant=tenant) as services:
        tenant = tenant_code(services, tenant)
        ids = [services.ledger.resolve_invoice_id(tenant, ref) for ref in invoice or []]
        if status is not None:
            try:
                status = InvoiceStatus(status).value
            except ValueError:
                allowed = ", ".join(s.value for s in InvoiceStatus)
                raise CliError(f"--status {status!r} is not one of {allowed}") from None
            services.bring_up_to_date("invoice_status")
            rows, _ = services.reader.list(tenant, InvoiceFilter(status=status), 10_001, None)
            ids += [r["invoice_id"] for r in rows]
        ids = unique(ids)
        if not ids:
            raise CliError("name invoices (--invoice) or a status (--status) that has some")
        if len(ids) > 10_000:
            raise CliError("at most 10,000 invoices per bundle")
        columns_ = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns_, console=console) as progress:
            task = progress.add_task("streams", total=len(ids))
            report = export_bundle(
                services,
                ExportRequest(
                    tenant_id=tenant,
                    invoice_ids=ids,
                    refs=invoice or [],
                    status=status,
                    by=by,
                    since_checkpoint=known,
                ),
                out,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
    console.print(
        f"{report.path}: {report.invoices} invoices, {report.cases} cases, {report.events} "
        f"events, {report.attachments} attachments, against checkpoint {report.tree_size} "
        f"(bundle {report.bundle_id})",
        highlight=False,
    )


def _rotated(keys: list[Any], text: str, path: Path | None) -> list[Any]:
    from infrastructure.evidence.checkpoint_signer import follow_rotations

    try:
        published = json.loads(text)
        statements = [k["rotation"] for k in published if k.get("rotation")]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CliError(f"--key-rotations {path}: not the JSON of /v1/checkpoints/keys") from None
    try:
        return follow_rotations(keys, statements)
    except ValueError as e:
        raise CliError(f"--key-rotations {path}: {e}") from None


def shown_time(at: datetime) -> str:
    """UTC as stored, Beijing time as shown."""
    from domain.calendar import SHANGHAI

    return f"{at.astimezone(SHANGHAI).isoformat()} ({at.astimezone(UTC).isoformat()})"


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    public_key: Annotated[
        Path | None,
        typer.Option(help="The log's verifier keys you trust, one per line (`fapiao ledger keys`)"),
    ] = None,
    known_checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint you hold: fail unless the bundle's log extends it"),
    ] = None,
    tsa_ca: Annotated[
        Path | None,
        typer.Option(help="PEM CA certificates of TSAs you trust: check the timestamp tokens"),
    ] = None,
    witness_key: Annotated[
        list[str] | None,
        typer.Option(help="A witness verifier key you trust (repeatable): check cosignatures"),
    ] = None,
    min_witnesses: Annotated[
        int, typer.Option(min=0, max=100, help="Fail unless this many trusted witnesses cosigned")
    ] = 0,
    key_rotations: Annotated[
        Path | None,
        typer.Option(
            help="The JSON of /v1/checkpoints/keys: trust the keys your --public-key keys "
            "rotated to, through the statements each outgoing key signed"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes that check the invoice streams of a large bundle in parallel "
            "[default: the CPUs this process may use, at most 8]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a bundle offline (no database): checksums, signatures, proofs, stream heads,
    the signed manifest, every readable file rebuilt from the sealed events, and (with
    --tsa-ca, --witness-key) the checkpoint's timestamp tokens and witness cosignatures; prints
    the earliest trusted time at which the checkpoint provably existed."""
    from domain.evidence.checkpoint import NoteFormatError
    from domain.evidence.cosignature import parse_cosigner_vkey
    from infrastructure.bootstrap import event_catalog
    from infrastructure.evidence.bundle_verifier import (
        UNTRUSTED,
        AnchorPolicy,
        default_workers,
        read_key_file,
        verify_bundle,
    )
    from infrastructure.evidence.timestamping import load_cas

    _regular(bundle, "bundle")
    keys_text = _read(public_key, "--public-key")
    try:
        keys = None if keys_text is None else read_key_file(keys_text)
    except ValueError as e:
        raise CliError(f"--public-key {public_key}: {e}") from None
    rotations_text = _read(key_rotations, "--key-rotations")
    if rotations_text is not None:
        if keys is None:
            raise CliError("--key-rotations needs --public-key (the keys you trusted first)")
        keys = _rotated(keys, rotations_text, key_rotations)
    cas_text = _read(tsa_ca, "--tsa-ca")
    try:
        cas = load_cas(cas_text.encode()) if cas_text is not None else []
    except ValueError as e:
        raise CliError(f"--tsa-ca {tsa_ca}: {e}") from None
    try:
        witnesses = [parse_cosigner_vkey(k) for k in witness_key or []]
    except NoteFormatError as e:
        raise CliError(f"--witness-key: {e}") from None
    if min_witnesses > len(witnesses):
        raise CliError(
            f"--min-witnesses {min_witnesses}: only {len(witnesses)} --witness-key given"
        )
    policy = AnchorPolicy(cas, witnesses, min_witnesses)
    result = verify_bundle(
        bundle,
        event_catalog(),
        keys,
        _read(known_checkpoint, "--known-checkpoint"),
        policy,
        workers=workers or default_workers(),
    )
    for name, at in result.timestamps:
        console.print(f"timestamp {name}: TSA time {shown_time(at)}", highlight=False)
    for name, at in result.witnesses:
        console.print(f"cosigned by {name} at {shown_time(at)}", highlight=False)
    if result.earliest is not None and not result.failures:
        console.print(
            f"the checkpoint provably existed by {shown_time(result.earliest[0])} "
            f"({result.earliest[1]})",
            highlight=False,
        )
    if result.failures:
        for failure in result.failures:
            err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    extends = (
        f"; it extends the checkpoint you hold (size {result.known_size})"
        if result.known_size is not None
        else ""
    )
    console.print(
        f"OK: {result.invoices} invoices, {result.cases} cases, {result.events} events, "
        f"{result.attachments} attachments against checkpoint {result.tree_size}: BagIt, "
        "signatures, inclusion proofs, stream heads (complete histories), the signed "
        f"manifest and every readable file verify ({result.key_source}){extends}",
        highlight=False,
        soft_wrap=True,
    )
    if not result.trusted:
        err.print(UNTRUSTED, highlight=False, markup=False)
        raise typer.Exit(UNTRUSTED_EXIT)
