"""`fapiao complaint ...`: complaint cases (投诉/申诉), acting as the --key given."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
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
from domain.errors import InvalidFieldError

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services

complaint_app = typer.Typer(help="Complaint cases (投诉/申诉).", no_args_is_help=True)


@complaint_app.command("lodge")
def complaint_lodge(
    key: Key,
    invoice: Annotated[list[str], typer.Option()],
    channel: Annotated[str, typer.Option()],
    demand: Annotated[str, typer.Option()],
    reply_due: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    reminder_days: Annotated[int, typer.Option()] = 2,
) -> None:
    """Lodge a complaint about invoices."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        ids = [s.ledger.resolve_invoice_id(p.tenant_id, ref) for ref in invoice]
        print_case(
            s.complaints.lodge(
                p.tenant_id,
                p.person,
                ids,
                channel,
                demand,
                date_option("reply_due", reply_due),
                reminder_days,
                by,
            )
        )


def _complaint(
    key: str, complaint: str, command: Callable[[Services], CaseCommand], *args: Any
) -> None:
    case_step(key, command, "complaint", complaint, *args)


@complaint_app.command("exchange")
def complaint_exchange(
    key: Key,
    complaint: str,
    channel: Annotated[str, typer.Option()],
    said: Annotated[str, typer.Option()],
    at: Annotated[
        str | None, typer.Option(help="ISO time; default now; Beijing if no offset")
    ] = None,
    counterpart: Annotated[str, typer.Option()] = "",
    role: Annotated[str, typer.Option(help="The counterpart's role")] = "",
    promised: Annotated[str, typer.Option()] = "",
    promised_reply_on: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Log an exchange with the bureau (a promised reply date becomes the deadline)."""
    when = datetime.now(UTC)
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidFieldError("at", f"{at!r} is not an ISO time", "datetime") from None
        from domain.calendar import SHANGHAI

        when = when if when.tzinfo else when.replace(tzinfo=SHANGHAI)
    _complaint(
        key,
        complaint,
        lambda s: s.complaints.log_exchange,
        when,
        channel,
        counterpart,
        role,
        said,
        promised,
        date_option("promised_reply_on", promised_reply_on),
    )


@complaint_app.command("deadline")
def complaint_deadline(
    key: Key,
    complaint: str,
    due_on: Annotated[str, typer.Option()],
    reminder_days: Annotated[int, typer.Option()] = 2,
) -> None:
    """Set the reply deadline."""
    _complaint(
        key,
        complaint,
        lambda s: s.complaints.set_reply_deadline,
        date_option("due_on", due_on),
        reminder_days,
    )


@complaint_app.command("escalate")
def complaint_escalate(
    key: Key,
    complaint: str,
    step: Annotated[str, typer.Option()],
    to: Annotated[str, typer.Option()],
    due_on: Annotated[str, typer.Option()],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Escalate (written_appeal, third_party) with its own deadline."""
    _complaint(
        key,
        complaint,
        lambda s: s.complaints.escalate,
        step,
        to,
        note,
        date_option("due_on", due_on),
    )


@complaint_app.command("evidence")
def complaint_evidence(
    key: Key, complaint: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Attach evidence."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        cid = case_id("complaint", complaint)
        s.complaints.get(p.tenant_id, cid)
        with store_file(s, file) as ref:
            print_case(s.complaints.add_evidence(p.tenant_id, cid, ref, by))


@complaint_app.command("resolve")
def complaint_resolve(
    key: Key,
    complaint: str,
    outcome: Annotated[str, typer.Option()],
    text: Annotated[str, typer.Option()] = "",
) -> None:
    """Close it: resolved, withdrawn or rejected (flagged if invoices are still missing)."""
    _complaint(key, complaint, lambda s: s.complaints.resolve, outcome, text)
