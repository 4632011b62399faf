"""案件: complaints (投诉/申诉) with their exchange log, reply deadline (reminder and overdue
badges) and escalations; lost paper invoice cases with the copy request, certificate and
scans. Clerks act; every other role reads."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from api.web.forms import PostedDep, ServicesDep, ViewerDep, act, by
from api.web.render import page
from api.web.routes.invoices import beijing_time
from api.web.session import Viewer
from application.access import INVOICE_WRITERS
from domain.errors import InvalidFieldError
from domain.remedies.complaint import CHANNELS, ESCALATIONS, OUTCOMES, Complaint
from domain.remedies.lost_invoice import OUTCOMES as LOST_OUTCOMES
from domain.remedies.lost_invoice import STEPS, LostInvoiceCase
from infrastructure.bootstrap import Services

router = APIRouter()
LIMIT = 200


def _date(field: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a date", "date") from None


def _upload(form: Any) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidFieldError("file", "choose a file", "required")
    return upload


def _text(form: Any, name: str) -> str:
    """A form field's text, stripped and bounded ("" when absent or a file)."""
    value = form.get(name, "")
    return value.strip()[:4000] if isinstance(value, str) else ""


def _events(services: Services, aggregate_id: UUID) -> list[Any]:
    return list(services.ledger.events.get(aggregate_id))


# ---- complaints --------------------------------------------------------------------------------


@router.get("/complaints", response_class=HTMLResponse)
def complaints(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    rows = services.cases.listing(v.principal.tenant_id, "complaint", None, LIMIT)
    return page(
        request,
        services,
        v,
        "complaints.html",
        rows=rows,
        channels=CHANNELS,
        today=services.ledger.today(),
    )


@router.post("/complaints")
def lodge(
    services: ServicesDep,
    v: PostedDep,
    invoices: Annotated[str, Form(max_length=40_000)],
    channel: Annotated[str, Form(max_length=40)],
    demand: Annotated[str, Form(max_length=4000)],
    reply_due_on: Annotated[str, Form(max_length=20)] = "",
    reminder_days: Annotated[int, Form(ge=0, le=30)] = 2,
) -> Response:
    def do() -> str:
        v.principal.require(INVOICE_WRITERS)
        tenant = v.principal.tenant_id
        refs = invoices.replace(",", " ").split()
        ids = [services.ledger.resolve_invoice_id(tenant, r) for r in refs[:1000]]
        result = services.complaints.lodge(
            tenant,
            v.principal.person,
            ids,
            channel,
            demand,
            _date("reply_due_on", reply_due_on),
            reminder_days,
            by(v, services),
        )
        return f"/console/complaints/{result.case_id}"

    return act(services, v, "/console/complaints", do, v.t("ui.done"))


def _keys(services: Services, v: Viewer, ids: list[str]) -> list[tuple[str, dict[str, Any] | None]]:
    tenant = v.principal.tenant_id
    return [(i, services.reader.get(tenant, UUID(i))) for i in ids]


@router.get("/complaints/{case_id}", response_class=HTMLResponse)
def complaint_page(
    request: Request, services: ServicesDep, v: ViewerDep, case_id: UUID
) -> HTMLResponse:
    c = services.complaints.get(v.principal.tenant_id, case_id)
    today = services.ledger.today()
    due = c.reply_due_on
    badge = None
    if due is not None and c.status == "open":
        if today > due:
            badge = "overdue"
        elif (due - today).days <= c.reminder_days:
            badge = "reminder"
    exchanges = [e for e in _events(services, case_id) if isinstance(e, Complaint.ExchangeLogged)]
    return page(
        request,
        services,
        v,
        "complaint.html",
        c=c,
        invoices=_keys(services, v, c.invoice_ids),
        still_missing=_keys(services, v, c.still_missing),
        exchanges=exchanges,
        history=_events(services, case_id),
        badge=badge,
        channels=CHANNELS,
        escalation_steps=ESCALATIONS,
        outcomes=OUTCOMES,
    )


@router.post("/complaints/{case_id}/{step}")
def complaint_step(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    case_id: UUID,
    step: str,
) -> Response:
    back = f"/console/complaints/{case_id}"
    tenant, form, service = v.principal.tenant_id, request.state.form, services.complaints

    def do() -> None:
        v.principal.require(INVOICE_WRITERS)
        b = by(v, services)
        if step == "exchange":
            at = beijing_time("at", _text(form, "at")) or b.occurred_at
            service.log_exchange(
                tenant,
                case_id,
                at,
                _text(form, "channel"),
                _text(form, "counterpart"),
                _text(form, "counterpart_role"),
                _text(form, "said"),
                _text(form, "promised"),
                _date("promised_reply_on", _text(form, "promised_reply_on")),
                b,
            )
        elif step == "deadline":
            due = _date("due_on", _text(form, "due_on"))
            if due is None:
                raise InvalidFieldError("due_on", "give the date", "required")
            service.set_reply_deadline(
                tenant, case_id, due, int(_text(form, "reminder_days") or 2), b
            )
        elif step == "escalate":
            due = _date("due_on", _text(form, "due_on"))
            if due is None:
                raise InvalidFieldError("due_on", "give the date", "required")
            service.escalate(
                tenant, case_id, _text(form, "step"), _text(form, "to"), _text(form, "note"), due, b
            )
        elif step == "evidence":
            service.get(tenant, case_id)
            upload = _upload(form)
            with services.attachments.staged(upload.file, upload.filename or "evidence") as ref:
                service.add_evidence(tenant, case_id, ref, b)
        elif step == "resolve":
            service.resolve(tenant, case_id, _text(form, "outcome"), _text(form, "text"), b)
        else:
            raise InvalidFieldError("step", f"no step {step!r}", "enum")

    return act(services, v, back, do, v.t("ui.done"))


# ---- lost paper invoices ----------------------------------------------------------------------

LOSS_TOPIC = LostInvoiceCase.LossRecorded.TOPIC


@router.get("/lost", response_class=HTMLResponse)
def lost_cases(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    tenant = v.principal.tenant_id
    services.bring_up_to_date("streams", services.settings.consistent_read_timeout)
    found = [
        services.lost_invoices.get(tenant, i)
        for i in services.cases.streams_of(tenant, LOSS_TOPIC, LIMIT)
    ]
    keys = services.reader.keys_for(tenant, [c.invoice_id for c in found if c.invoice_id])
    found.sort(key=lambda c: c.number, reverse=True)
    return page(
        request,
        services,
        v,
        "lost.html",
        cases=[(c, keys.get(c.invoice_id) if c.invoice_id else None) for c in found],
        today=services.ledger.today(),
    )


@router.post("/lost")
def record_loss(
    services: ServicesDep,
    v: PostedDep,
    invoice: Annotated[str, Form(max_length=60)],
    lost_on: Annotated[str, Form(max_length=20)],
    circumstances: Annotated[str, Form(max_length=4000)],
    place: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    def do() -> str:
        v.principal.require(INVOICE_WRITERS)
        tenant = v.principal.tenant_id
        lost = _date("lost_on", lost_on)
        if lost is None:
            raise InvalidFieldError("lost_on", "give the date", "required")
        result = services.lost_invoices.record(
            tenant,
            services.ledger.resolve_invoice_id(tenant, invoice.strip()),
            lost,
            place,
            circumstances,
            by(v, services),
        )
        return f"/console/lost/{result.case_id}"

    return act(services, v, "/console/lost", do, v.t("ui.done"))


@router.get("/lost/{case_id}", response_class=HTMLResponse)
def lost_case(request: Request, services: ServicesDep, v: ViewerDep, case_id: UUID) -> HTMLResponse:
    tenant = v.principal.tenant_id
    case = services.lost_invoices.get(tenant, case_id)
    row = services.reader.get(tenant, case.invoice_id) if case.invoice_id else None
    return page(
        request,
        services,
        v,
        "lost_case.html",
        case=case,
        row=row,
        history=_events(services, case_id),
        steps=STEPS,
        outcomes=LOST_OUTCOMES,
        today=services.ledger.today(),
    )


@router.post("/lost/{case_id}/{step}")
def lost_step(
    request: Request, services: ServicesDep, v: PostedDep, case_id: UUID, step: str
) -> Response:
    back = f"/console/lost/{case_id}"
    tenant, form, service = v.principal.tenant_id, request.state.form, services.lost_invoices

    def do() -> None:
        v.principal.require(INVOICE_WRITERS)
        b = by(v, services)
        if step == "copy-request":
            on = _date("requested_on", _text(form, "requested_on")) or services.ledger.today()
            service.request_copy(tenant, case_id, _text(form, "issuer"), on, _text(form, "note"), b)
        elif step == "certificate":
            on = _date("issued_on", _text(form, "issued_on")) or services.ledger.today()
            service.record_certificate(tenant, case_id, _text(form, "certificate_number"), on, b)
        elif step == "attach":
            service.get(tenant, case_id)
            upload = _upload(form)
            name = upload.filename or _text(form, "step")
            with services.attachments.staged(upload.file, name) as ref:
                service.attach(tenant, case_id, _text(form, "step"), ref, b)
        elif step == "close":
            service.close(tenant, case_id, _text(form, "outcome"), _text(form, "note"), b)
        else:
            raise InvalidFieldError("step", f"no step {step!r}", "enum")

    return act(services, v, back, do, v.t("ui.done"))
