"""`fapiao reentry|complaint|lost|queue ...`: every step of the remedies from the command line.

Each command acts as the API key given with --key (or FAPIAO_KEY): the same roles and
separation of duties apply as over HTTP, and events record that key as the actor.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from application.access import APPROVERS, DECIDERS, INVOICE_WRITERS, REVIEWERS, Principal
from application.invoices.ledger import SHANGHAI
from application.remedies.reentry_service import CaseResult
from domain.base import Provenance, Source
from domain.errors import InvalidFieldError
from infrastructure.bootstrap import Services

Key = Annotated[str, typer.Option("--key", envvar="FAPIAO_KEY", help="API key to act as")]
reentry_app = typer.Typer(help="Supplementary-entry applications (补录).", no_args_is_help=True)
complaint_app = typer.Typer(help="Complaint cases (投诉/申诉).", no_args_is_help=True)
lost_app = typer.Typer(help="Lost paper invoice cases.", no_args_is_help=True)
queue_app = typer.Typer(help="Work queues per role.", no_args_is_help=True)


def _services() -> Any:
    from api.cli.root import services_for

    return services_for()


def _act(services: Services, key: str) -> tuple[Principal, Provenance]:
    principal = services.keys.authenticate(key)
    if principal is None:
        from api.cli.root import CliError

        raise CliError("the API key is unknown or revoked")
    return principal, Provenance(principal.actor, Source.CLI, datetime.now(UTC))


def _store(services: Services, file: Path) -> Any:
    """Keep the file in the attachment store (refused by content, leaving nothing)."""
    with file.open("rb") as f:
        return services.attachments.put(f, file.name)


def _done(result: CaseResult) -> None:
    print(f"{result.number} {result.status} (case {result.case_id}, position {result.position})")


def _uuid(field: str, text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a case id", "uuid") from None


def _date(field: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a date (YYYY-MM-DD)", "date") from None


# ---- supplementary entry ---------------------------------------------------------------------


@reentry_app.command("draft")
def reentry_draft(
    key: Key,
    invoice: Annotated[list[str], typer.Option(help="id or key")],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Open an application for missing or rejected invoices."""
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        ids = [s.ledger.resolve_invoice_id(p.tenant_id, ref) for ref in invoice]
        _done(s.reentry.draft(p.tenant_id, p.person, ids, reason, by))


@reentry_app.command("fields")
def reentry_fields(
    key: Key,
    application: str,
    invoice: str,
    set_: Annotated[list[str], typer.Option("--set", help="field=value")],
) -> None:
    """Record the fields to enter for one invoice."""
    fields = {}
    for item in set_:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidFieldError("set", f"{item!r} is not field=value", "format")
        fields[name.strip()] = value
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        _done(
            s.reentry.correct(
                p.tenant_id,
                _uuid("application", application),
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
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        app_id = _uuid("application", application)
        s.reentry.get(p.tenant_id, app_id)
        ref = _store(s, file)
        _done(s.reentry.attach(p.tenant_id, app_id, p.person, ref, by))


def _case_step(
    key: str,
    service: str,
    method: str,
    field: str,
    case: str,
    *args: Any,
    roles: frozenset[Any] = INVOICE_WRITERS,
    person: bool = False,
) -> None:
    """Act as the key: check its roles, then `service.method(tenant, case, [person], *args, by)`."""
    with _services() as s:
        p, by = _act(s, key)
        p.require(roles)
        who = (p.person,) if person else ()
        call = getattr(getattr(s, service), method)
        _done(call(p.tenant_id, _uuid(field, case), *who, *args, by))


def _step(key: str, application: str, roles: frozenset[Any], step: str, **kwargs: Any) -> None:
    _case_step(
        key, "reentry", step, "application", application, *kwargs.values(), roles=roles, person=True
    )


@reentry_app.command("submit")
def reentry_submit(key: Key, application: str) -> None:
    """Submit for review (lists everything missing, if anything is)."""
    _step(key, application, INVOICE_WRITERS, "submit")


@reentry_app.command("review")
def reentry_review(
    key: Key, application: str, comment: Annotated[str, typer.Option()] = ""
) -> None:
    """Reviewer: checked, pass to an approver."""
    _step(key, application, REVIEWERS, "review", comment=comment)


@reentry_app.command("approve")
def reentry_approve(
    key: Key, application: str, comment: Annotated[str, typer.Option()] = ""
) -> None:
    """Approver: approve; the invoices are re-entered."""
    _step(key, application, APPROVERS, "approve", comment=comment)


@reentry_app.command("return")
def reentry_return(
    key: Key, application: str, reason: Annotated[list[str], typer.Option(help="What must change")]
) -> None:
    """Reviewer or approver: send back to the applicant with reasons."""
    _step(key, application, DECIDERS, "return_to_applicant", reasons=reason)


@reentry_app.command("withdraw")
def reentry_withdraw(
    key: Key, application: str, reason: Annotated[str, typer.Option()] = ""
) -> None:
    """Applicant: withdraw."""
    _step(key, application, INVOICE_WRITERS, "withdraw", reason=reason)


@reentry_app.command("show")
def reentry_show(key: Key, application: str) -> None:
    """The application as JSON."""
    with _services() as s:
        p, _ = _act(s, key)
        a = s.reentry.get(p.tenant_id, _uuid("application", application))
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
                },
                ensure_ascii=False,
                indent=1,
            )
        )


# ---- complaints ------------------------------------------------------------------------------


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
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        ids = [s.ledger.resolve_invoice_id(p.tenant_id, ref) for ref in invoice]
        _done(
            s.complaints.lodge(
                p.tenant_id,
                p.person,
                ids,
                channel,
                demand,
                _date("reply_due", reply_due),
                reminder_days,
                by,
            )
        )


def _complaint(key: str, complaint: str, call: str, *args: Any) -> None:
    _case_step(key, "complaints", call, "complaint", complaint, *args)


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
        when = when if when.tzinfo else when.replace(tzinfo=SHANGHAI)
    _complaint(
        key,
        complaint,
        "log_exchange",
        when,
        channel,
        counterpart,
        role,
        said,
        promised,
        _date("promised_reply_on", promised_reply_on),
    )


@complaint_app.command("deadline")
def complaint_deadline(
    key: Key,
    complaint: str,
    due_on: Annotated[str, typer.Option()],
    reminder_days: Annotated[int, typer.Option()] = 2,
) -> None:
    """Set the reply deadline."""
    _complaint(key, complaint, "set_reply_deadline", _date("due_on", due_on), reminder_days)


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
    _complaint(key, complaint, "escalate", step, to, note, _date("due_on", due_on))


@complaint_app.command("evidence")
def complaint_evidence(
    key: Key, complaint: str, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Attach evidence."""
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        cid = _uuid("complaint", complaint)
        s.complaints.get(p.tenant_id, cid)
        ref = _store(s, file)
        _done(s.complaints.add_evidence(p.tenant_id, cid, ref, by))


@complaint_app.command("resolve")
def complaint_resolve(
    key: Key,
    complaint: str,
    outcome: Annotated[str, typer.Option()],
    text: Annotated[str, typer.Option()] = "",
) -> None:
    """Close it: resolved, withdrawn or rejected (flagged if invoices are still missing)."""
    _complaint(key, complaint, "resolve", outcome, text)


# ---- lost paper invoices ---------------------------------------------------------------------


@lost_app.command("record")
def lost_record(
    key: Key,
    invoice: Annotated[str, typer.Option()],
    lost_on: Annotated[str, typer.Option()],
    circumstances: Annotated[str, typer.Option()],
    place: Annotated[str, typer.Option()] = "",
) -> None:
    """Record a lost paper invoice."""
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        _done(
            s.lost_invoices.record(
                p.tenant_id,
                s.ledger.resolve_invoice_id(p.tenant_id, invoice),
                _date("lost_on", lost_on),
                place,
                circumstances,
                by,
            )
        )


def _lost(key: str, case: str, call: str, *args: Any) -> None:
    _case_step(key, "lost_invoices", call, "case", case, *args)


@lost_app.command("copy-request")
def lost_copy_request(
    key: Key,
    case: str,
    issuer: Annotated[str, typer.Option()],
    requested_on: Annotated[str, typer.Option()],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """The issuer was asked for a stamped copy."""
    _lost(key, case, "request_copy", issuer, _date("requested_on", requested_on), note)


@lost_app.command("certificate")
def lost_certificate(
    key: Key,
    case: str,
    number: Annotated[str, typer.Option()],
    issued_on: Annotated[str, typer.Option()],
) -> None:
    """The tax bureau's certificate."""
    _lost(key, case, "record_certificate", number, _date("issued_on", issued_on))


@lost_app.command("attach")
def lost_attach(
    key: Key,
    case: str,
    step: Annotated[str, typer.Option()],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """A scan for a step: loss, copy_request, copy or certificate."""
    with _services() as s:
        p, by = _act(s, key)
        p.require(INVOICE_WRITERS)
        cid = _uuid("case", case)
        s.lost_invoices.get(p.tenant_id, cid)
        ref = _store(s, file)
        _done(s.lost_invoices.attach(p.tenant_id, cid, step, ref, by))


@lost_app.command("close")
def lost_close(
    key: Key,
    case: str,
    outcome: Annotated[str, typer.Option()],
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Close: copy_obtained, certificate_obtained or abandoned."""
    _lost(key, case, "close", outcome, note)


# ---- queues ----------------------------------------------------------------------------------


@queue_app.command("show")
def queue_show(
    key: Key,
    role: Annotated[str, typer.Argument(help="reviewer, approver, clerk")],
    days: Annotated[int, typer.Option(help="Clerk: replies due within")] = 3,
) -> None:
    """The cases waiting for this role, with counts."""
    with _services() as s:
        p, _ = _act(s, key)
        t = p.tenant_id
        s.bring_up_to_date("cases")
        lists: dict[str, list[dict[str, Any]]]
        if role == "reviewer":
            p.require(REVIEWERS)
            lists = {"awaiting review": s.cases.queue(t, "reentry", ["submitted"])}
        elif role == "approver":
            p.require(APPROVERS)
            lists = {"awaiting approval": s.cases.queue(t, "reentry", ["reviewed"])}
        elif role == "clerk":
            p.require(INVOICE_WRITERS)
            lists = {
                "returned applications": s.cases.queue(t, "reentry", ["returned"]),
                "replies due": s.cases.queue(
                    t, "complaint", ["open"], s.ledger.today() + timedelta(days=days)
                ),
                "resolved, invoices still missing": s.cases.queue(
                    t, "complaint", ["resolved"], flagged=True
                ),
            }
        else:
            raise InvalidFieldError("role", "reviewer, approver or clerk", "enum")
        for title, rows in lists.items():
            print(f"{title}: {len(rows)}")
            for r in rows:
                print(
                    f"  {r['number']} {r['status']} owner {r['owner']}"
                    + (" FLAGGED" if r["flagged"] else "")
                )
