"""`fapiao reentry ...`: supplementary-entry applications (补录) from the command line.

Each command acts as the API key given with --key (or FAPIAO_KEY): the same roles and
separation of duties apply as over HTTP, and events record that key as the actor.
"""

from __future__ import annotations

import json
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
    field_pairs,
    print_case,
    services_for,
    store_file,
)
from application.access import APPROVERS, DECIDERS, INVOICE_WRITERS, REVIEWERS

if TYPE_CHECKING:
    from infrastructure.bootstrap import Services

reentry_app = typer.Typer(help="Supplementary-entry applications (补录).", no_args_is_help=True)


@reentry_app.command("draft")
def reentry_draft(
    key: Key,
    invoice: Annotated[list[str], typer.Option(help="id or key")],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Open an application for missing or rejected invoices."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        ids = [s.ledger.resolve_invoice_id(p.tenant_id, ref) for ref in invoice]
        print_case(s.reentry.draft(p.tenant_id, p.person, ids, reason, by))


@reentry_app.command("fields")
def reentry_fields(
    key: Key,
    application: str,
    invoice: str,
    set_: Annotated[list[str], typer.Option("--set", help="field=value")],
) -> None:
    """Record the fields to enter for one invoice."""
    fields = field_pairs(set_)
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        print_case(
            s.reentry.correct(
                p.tenant_id,
                case_id("application", application),
                p.person,
                s.ledger.resolve_invoice_id(p.tenant_id, invoice),
                fields,
                by,
            )
        )


@reentry_app.command("attach")
def reentry_attach(
    key: Key, application: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Attach evidence (PDF, OFD, XML, JPEG or PNG, checked by content)."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(INVOICE_WRITERS)
        app_id = case_id("application", application)
        s.reentry.get(p.tenant_id, app_id)
        with store_file(s, file) as ref:
            print_case(s.reentry.attach(p.tenant_id, app_id, p.person, ref, by))


def _step(
    key: str,
    application: str,
    roles: frozenset[Any],
    command: Callable[[Services], CaseCommand],
    *args: Any,
) -> None:
    case_step(key, command, "application", application, *args, roles=roles, person=True)


@reentry_app.command("submit")
def reentry_submit(key: Key, application: str) -> None:
    """Submit for review (lists everything missing, if anything is)."""
    _step(key, application, INVOICE_WRITERS, lambda s: s.reentry.submit)


@reentry_app.command("review")
def reentry_review(
    key: Key, application: str, comment: Annotated[str, typer.Option()] = ""
) -> None:
    """Reviewer: checked, pass to an approver."""
    _step(key, application, REVIEWERS, lambda s: s.reentry.review, comment)


@reentry_app.command("approve")
def reentry_approve(
    key: Key, application: str, comment: Annotated[str, typer.Option()] = ""
) -> None:
    """Approver: approve; the invoices are re-entered."""
    _step(key, application, APPROVERS, lambda s: s.reentry.approve, comment)


@reentry_app.command("return")
def reentry_return(
    key: Key, application: str, reason: Annotated[list[str], typer.Option(help="What must change")]
) -> None:
    """Reviewer or approver: send back to the applicant with reasons."""
    _step(key, application, DECIDERS, lambda s: s.reentry.return_to_applicant, reason)


@reentry_app.command("withdraw")
def reentry_withdraw(
    key: Key, application: str, reason: Annotated[str, typer.Option()] = ""
) -> None:
    """Applicant: withdraw."""
    _step(key, application, INVOICE_WRITERS, lambda s: s.reentry.withdraw, reason)


@reentry_app.command("show")
def reentry_show(key: Key, application: str) -> None:
    """The application as JSON."""
    with services_for(key=key) as s:
        from api.http.schemas import shown

        p, _ = act_as(s, key)
        a = s.reentry.get(p.tenant_id, case_id("application", application))
        print(
            json.dumps(
                {
                    "number": a.number,
                    "status": a.status,
                    "round": a.round,
                    "applicant": a.applicant,
                    "reviewer": a.reviewer,
                    "approver": a.approver,
                    "invoice_ids": a.invoice_ids,
                    "corrections": a.corrections,
                    "attachments": a.attachments,
                    "missing": [f"{e.field}: {e.message}" for e in a.missing_items()],
                    "review_due_at": shown(a.review_due_at),
                    "review_calendar": a.review_calendar,
                    "review_calendar_note": a.review_calendar_note,
                },
                ensure_ascii=False,
                indent=1,
            )
        )
