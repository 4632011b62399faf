"""`fapiao lost ...`: lost paper invoice cases, acting as the --key given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli.root import (
    CaseCommand,
    Key,
    act_as,
    case_id,
    case_step,
    date_option,
    print_case,
    services_for,
    store_file,
)
from application.access import INVOICE_WRITERS

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services

lost_app = typer.Typer(help="Lost paper invoice cases.", no_args_is_help=True)


@lost_app.command("record")
def lost_record(
    key: Key,
    invoice: Annotated[str, typer.Option()],
    lost_on: Annotated[str, typer.Option()],
    circumstances: Annotated[str, typer.Option()],
    place: Annotated[str, typer.Option()] = "",
) -> None:
    """Record a lost paper invoice."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        print_case(
            s.lost_invoices.record(
                p.tenant_id,
                s.ledger.resolve_invoice_id(p.tenant_id, invoice),
                date_option("lost_on", lost_on),
                place,
                circumstances,
                by,
            )
        )


def _lost(key: str, case: str, command: Callable[[Services], CaseCommand], *args: Any) -> None:
    case_step(key, command, "case", case, *args)


@lost_app.command("copy-request")
def lost_copy_request(
    key: Key,
    case: str,
    issuer: Annotated[str, typer.Option()],
    requested_on: Annotated[str, typer.Option()],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """The issuer was asked for a stamped copy."""
    _lost(
        key,
        case,
        lambda s: s.lost_invoices.request_copy,
        issuer,
        date_option("requested_on", requested_on),
        note,
    )


@lost_app.command("certificate")
def lost_certificate(
    key: Key,
    case: str,
    number: Annotated[str, typer.Option()],
    issued_on: Annotated[str, typer.Option()],
) -> None:
    """The tax bureau's certificate."""
    _lost(
        key,
        case,
        lambda s: s.lost_invoices.record_certificate,
        number,
        date_option("issued_on", issued_on),
    )


@lost_app.command("attach")
def lost_attach(
    key: Key,
    case: str,
    step: Annotated[str, typer.Option()],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """A scan for a step: loss, copy_request, copy or certificate."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        cid = case_id("case", case)
        s.lost_invoices.get(p.tenant_id, cid)
        with store_file(s, file) as ref:
            print_case(s.lost_invoices.attach(p.tenant_id, cid, step, ref, by))


@lost_app.command("close")
def lost_close(
    key: Key,
    case: str,
    outcome: Annotated[str, typer.Option()],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Close: copy_obtained, certificate_obtained or abandoned."""
    _lost(key, case, lambda s: s.lost_invoices.close, outcome, note)
