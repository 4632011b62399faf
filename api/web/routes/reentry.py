"""补录: supplementary-entry applications. The list; opening one from missing or rejected
invoices; the applicant's reason, fields, attachments, submission and withdrawal; the
reviewer's and approver's decisions. Separation of duties is shown before the click: the page
asks the application itself (`ReEntryApplication.refusal`) whether this person may take each
step, and a refused button is disabled with the reason beside it."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from api.web.forms import PostedDep, ServicesDep, ViewerDep, act, by
from api.web.render import page
from api.web.session import Viewer
from application.access import APPROVERS, DECIDERS, INVOICE_WRITERS, REVIEWERS
from domain.errors import InvalidFieldError, InvalidTransitionError, SeparationOfDutiesError
from domain.remedies.reentry_application import ReEntryApplication
from infrastructure.bootstrap import Services

router = APIRouter()
LIST_LIMIT = 200
DECISIONS = ("review", "approve", "return")


def _ids(services: Services, v: Viewer, text: str) -> list[UUID]:
    refs = text.replace(",", " ").split()
    if not refs:
        raise InvalidFieldError("invoices", "name at least one invoice", "required")
    return [services.ledger.resolve_invoice_id(v.principal.tenant_id, r) for r in refs[:1000]]


@router.get("/reentry", response_class=HTMLResponse)
def applications(
    request: Request, services: ServicesDep, v: ViewerDep, status: str | None = None
) -> HTMLResponse:
    rows = services.cases.listing(v.principal.tenant_id, "reentry", status, LIST_LIMIT)
    return page(
        request,
        services,
        v,
        "reentry_list.html",
        rows=rows,
        status=status,
        statuses=["drafted", "submitted", "reviewed", "returned", "approved", "withdrawn"],
    )


@router.post("/reentry")
def draft(
    services: ServicesDep,
    v: PostedDep,
    invoices: Annotated[str, Form(max_length=40_000)],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    back = "/console/reentry"

    def do() -> str:
        v.principal.require(INVOICE_WRITERS)
        ids = _ids(services, v, invoices)
        result = services.reentry.draft(
            v.principal.tenant_id, v.principal.person, ids, reason, by(v, services)
        )
        return f"/console/reentry/{result.case_id}"

    return act(services, v, back, do, v.t("ui.done"))


def _history(services: Services, app: ReEntryApplication) -> list[dict[str, Any]]:
    out = []
    for e in services.ledger.events.get(app.id):
        out.append(
            {
                "topic": e.TOPIC if hasattr(e, "TOPIC") else "",
                "actor": getattr(e, "actor", ""),
                "at": getattr(e, "occurred_at", None),
                "comment": getattr(e, "comment", "") or getattr(e, "reason", ""),
                "reasons": getattr(e, "reasons", []),
            }
        )
    return out


def _panel(app: ReEntryApplication, v: Viewer) -> dict[str, Any]:
    """The steps whose turn it is that this viewer's roles allow, each None (they may) or the
    reason they may not; `bad` when separation of duties is what refuses them."""
    me, steps, bad = v.principal.person, {}, False
    wanted = [("review", REVIEWERS), ("approve", APPROVERS), ("return", DECIDERS)]
    wanted += [(s, INVOICE_WRITERS) for s in ("correct", "submit", "withdraw")]
    for step, allowed in wanted:
        if not v.principal.may(allowed):
            continue
        refused = app.refusal(step, me)
        if isinstance(refused, InvalidTransitionError):
            continue  # not this step's turn
        bad = bad or (isinstance(refused, SeparationOfDutiesError) and step in DECISIONS)
        steps[step] = None if refused is None else v.t.error(refused)[0]
    return {"me": me, "steps": steps, "bad": bad}


@router.get("/reentry/{application_id}", response_class=HTMLResponse)
def application_page(
    request: Request, services: ServicesDep, v: ViewerDep, application_id: UUID
) -> HTMLResponse:
    tenant = v.principal.tenant_id
    app = services.reentry.get(tenant, application_id)
    ids = [UUID(i) for i in app.invoice_ids]
    rows = {i: services.reader.get(tenant, i) for i in ids}
    history = _history(services, app)
    last_return = next((h["reasons"] for h in reversed(history) if h["reasons"]), [])
    return page(
        request,
        services,
        v,
        "reentry.html",
        app=app,
        invoices=[(str(i), rows[i]) for i in ids],
        missing=app.missing_items() if app.status in ("drafted", "returned") else [],
        history=history,
        last_return=last_return,
        panel=_panel(app, v),
    )


def _next_in_queue(services: Services, v: Viewer, status: str, after: UUID) -> str:
    """After a decision, the next application waiting for this role (else the queue)."""
    queue = services.cases.queue(v.principal.tenant_id, "reentry", [status])
    for row in queue:
        if row["case_id"] != after:
            return f"/console/reentry/{row['case_id']}"
    return "/console/queues/" + ("reviewer" if status == "submitted" else "approver")


@router.post("/reentry/{application_id}/{step}")
def step(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    application_id: UUID,
    step: str,
    text: Annotated[str, Form(max_length=4000)] = "",
    invoice: Annotated[str, Form(max_length=60)] = "",
) -> Response:
    back = f"/console/reentry/{application_id}"
    tenant, person = v.principal.tenant_id, v.principal.person
    service = services.reentry
    form = request.state.form

    def do() -> str | None:
        b = by(v, services)
        if step == "reason":
            v.principal.require(INVOICE_WRITERS)
            service.restate_reason(tenant, application_id, person, text, b)
        elif step == "fields":
            v.principal.require(INVOICE_WRITERS)
            fields = _pairs(text)
            invoice_id = services.ledger.resolve_invoice_id(tenant, invoice)
            service.correct(tenant, application_id, person, invoice_id, fields, b)
        elif step == "attach":
            v.principal.require(INVOICE_WRITERS)
            service.get(tenant, application_id)  # 404 before storing anything
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise InvalidFieldError("file", "choose a file", "required")
            with services.attachments.staged(upload.file, upload.filename) as ref:
                service.attach(tenant, application_id, person, ref, b)
        elif step == "submit":
            v.principal.require(INVOICE_WRITERS)
            service.submit(tenant, application_id, person, b)
        elif step == "withdraw":
            v.principal.require(INVOICE_WRITERS)
            service.withdraw(tenant, application_id, person, text, b)
        elif step == "review":
            v.principal.require(REVIEWERS)
            service.review(tenant, application_id, person, text, b)
            return _next_in_queue(services, v, "submitted", application_id)
        elif step == "approve":
            v.principal.require(APPROVERS)
            result = service.approve(tenant, application_id, person, text, b)
            services.wait_for("invoice_status", result.position, 5)
            return _next_in_queue(services, v, "reviewed", application_id)
        elif step == "return":
            v.principal.require(DECIDERS)
            reasons = [line.strip() for line in text.splitlines() if line.strip()]
            service.return_to_applicant(tenant, application_id, person, reasons, b)
        else:
            raise InvalidFieldError("step", f"no step {step!r}", "enum")
        return None

    return act(services, v, back, do, v.t("ui.done"))


def _pairs(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise InvalidFieldError("fields", f"{line.strip()!r} is not field=value", "format")
        fields[name.strip()] = value.strip()
    return fields
