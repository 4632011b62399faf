"""发票: the list with the API's filters (same query names), keyset paging and full CSV/XLSX
downloads; an invoice's page (face, timeline in Beijing time, state as of any time, correction
links, attachments, cases naming it) with the lifecycle forms its status allows; recording one.

The lifecycle forms are built from the same declarations as the API's bodies
(application/invoices/lifecycle.py), so a field added there appears here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from api.http.routes.invoices import _decode_cursor, _encode_cursor
from api.http.schemas import IssueInvoiceRequest
from api.web.forms import PostedDep, ServicesDep, ViewerDep, act, by, form_idempotency, new_form_key
from api.web.render import page, redirect_with
from api.web.session import Viewer
from application.access import INVOICE_WRITERS
from application.invoices.lifecycle import LIFECYCLE, LifecycleCommand
from application.ports import InvoiceFilter
from domain.calendar import SHANGHAI
from domain.errors import InvalidFieldError, ValidationFailedError
from domain.invoices.status import ALLOWED_FROM, InvoiceStatus
from domain.invoices.values import InvoiceType
from infrastructure.bootstrap import Services

router = APIRouter()
PAGE = 50
EXPORT_PAGE = 1000
BY_NAME = {c.name: c for c in LIFECYCLE}
FILTERS = ("status", "issued_from", "issued_to", "seller", "buyer", "min_total", "max_total")


def beijing_time(field: str, text: str | None) -> datetime | None:
    """A time from a form or URL; without an offset it is Beijing time (what clerks read)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a time", "date") from None
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


def _amount(field: str, text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        raise InvalidFieldError(field, f"{text!r} is not an amount", "money_format") from None


def _filters(params: dict[str, str]) -> InvoiceFilter:
    status = params.get("status") or None
    if status is not None and status not in {s.value for s in InvoiceStatus}:
        raise InvalidFieldError("status", f"{status!r} is not a status", "enum")
    return InvoiceFilter(
        status,
        date.fromisoformat(params["issued_from"]) if params.get("issued_from") else None,
        date.fromisoformat(params["issued_to"]) if params.get("issued_to") else None,
        (params.get("seller") or "").strip().upper() or None,
        (params.get("buyer") or "").strip().upper() or None,
        _amount("min_total", params.get("min_total")),
        _amount("max_total", params.get("max_total")),
    )


def _query(params: dict[str, str]) -> tuple[InvoiceFilter, datetime | None]:
    try:
        filters = _filters(params)
    except ValueError:
        raise InvalidFieldError("issued_from", "dates are YYYY-MM-DD", "date") from None
    return filters, beijing_time("as_of", params.get("as_of"))


def _rows(
    services: Services,
    v: Viewer,
    filters: InvoiceFilter,
    as_of: datetime | None,
    limit: int,
    after: tuple[date, UUID] | None,
) -> tuple[list[dict[str, Any]], int]:
    tenant = v.principal.tenant_id
    if as_of is None:
        return services.reader.list(tenant, filters, limit, after)
    for view in ("invoice_status", "status_history"):
        services.bring_up_to_date(view, services.settings.consistent_read_timeout)
    return services.reader.list_as_of(tenant, filters, as_of, limit, after)


@router.get("/invoices", response_class=HTMLResponse)
def invoice_list(
    request: Request,
    services: ServicesDep,
    v: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    params = {k: request.query_params.get(k, "") for k in (*FILTERS, "as_of")}
    filters, as_of = _query(params)
    after = _decode_cursor(cursor) if cursor else None
    rows, total = _rows(services, v, filters, as_of, PAGE, after)
    if as_of is not None:
        services.access_log.record(
            v.principal, "status-as-of", as_of.isoformat(), services.ledger.clock.now()
        )
    next_cursor = (
        _encode_cursor(rows[-1]["issued_on"], rows[-1]["invoice_id"]) if len(rows) == PAGE else None
    )
    kept = "&".join(f"{k}={val}" for k, val in params.items() if val and k != "status")
    return page(
        request,
        services,
        v,
        "invoices.html",
        rows=rows,
        total=total,
        params=params,
        kept=kept,
        as_of=as_of,
        next_cursor=next_cursor,
        cursor=cursor,
        counts=services.reader.counts(v.principal.tenant_id),
        statuses=[s.value for s in InvoiceStatus],
        export_query=request.url.query.replace(f"cursor={cursor}", "")
        if cursor
        else request.url.query,
    )


@router.get("/invoices/find")
def find(
    services: ServicesDep, v: ViewerDep, ref: Annotated[str, Query(max_length=60)]
) -> Response:
    """A pasted number opens its invoice (or the list, filtered, when it is not one)."""
    ref = "".join(ref.split())
    return RedirectResponse(f"/console/invoices/{ref}", status_code=303)


COLUMNS = (
    ("invoice_key", "inv.key"),
    ("code", "inv.code"),
    ("number", "inv.number"),
    ("invoice_type", "inv.type"),
    ("issued_on", "inv.issued_on"),
    ("seller_name", "inv.seller"),
    ("seller_code", "inv.seller_code"),
    ("buyer_name", "inv.buyer"),
    ("buyer_code", "inv.buyer_code"),
    ("amount", "inv.amount"),
    ("tax", "inv.tax"),
    ("total", "inv.total"),
    ("status", "inv.status"),
    ("submission_attempts", "inv.attempts"),
    ("updated_at", "inv.last_change"),
)


def _all_rows(
    services: Services, v: Viewer, filters: InvoiceFilter, as_of: datetime | None
) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        rows, _ = _rows(services, v, filters, as_of, EXPORT_PAGE, after)
        yield from rows
        if len(rows) < EXPORT_PAGE:
            return
        after = (rows[-1]["issued_on"], rows[-1]["invoice_id"])


def _cells(v: Viewer, row: dict[str, Any]) -> list[str]:
    out = []
    for name, _ in COLUMNS:
        value = row[name]
        if name in ("amount", "tax", "total"):
            out.append(f"{Decimal(str(value)):.2f}")
        elif name == "status":
            out.append(v.t.get("status", value))
        elif name == "invoice_type":
            out.append(v.t.get("itype", value))
        elif isinstance(value, datetime):
            out.append(value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))
        else:
            out.append("" if value is None else str(value))
    return out


@router.get("/invoices.csv")
def export_csv(request: Request, services: ServicesDep, v: ViewerDep) -> StreamingResponse:
    """Every matching invoice (all pages): UTF-8 with a BOM for Excel, keys as text, the filters
    on the first line."""
    params = {k: request.query_params.get(k, "") for k in (*FILTERS, "as_of")}
    filters, as_of = _query(params)
    services.access_log.record(
        v.principal, "invoice-export", request.url.query, services.ledger.clock.now()
    )

    def lines() -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow([f"# {k}={val}" for k, val in params.items() if val] or ["# all"])
        writer.writerow([v.t(label) for _, label in COLUMNS])
        for row in _all_rows(services, v, filters, as_of):
            writer.writerow(_cells(v, row))
            if buffer.tell() > 1 << 16:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="invoices.csv"'},
    )


@router.get("/invoices.xlsx")
def export_xlsx(request: Request, services: ServicesDep, v: ViewerDep) -> Response:
    """The same as the CSV, as a workbook whose key and amount cells are text."""
    from openpyxl import Workbook

    params = {k: request.query_params.get(k, "") for k in (*FILTERS, "as_of")}
    filters, as_of = _query(params)
    services.access_log.record(
        v.principal, "invoice-export", request.url.query, services.ledger.clock.now()
    )
    book = Workbook(write_only=True)
    sheet = book.create_sheet("invoices")
    sheet.append([f"{k}={val}" for k, val in params.items() if val] or ["all"])
    sheet.append([v.t(label) for _, label in COLUMNS])
    for row in _all_rows(services, v, filters, as_of):
        sheet.append(_cells(v, row))
    out = io.BytesIO()
    book.save(out)
    return Response(
        out.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": 'attachment; filename="invoices.xlsx"'},
    )


# ---- recording an invoice -------------------------------------------------------------------


@router.get("/invoices/new", response_class=HTMLResponse)
def new_invoice(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    v.principal.require(INVOICE_WRITERS)
    return page(
        request,
        services,
        v,
        "invoice_new.html",
        types=[t.value for t in InvoiceType],
        today=services.ledger.today(),
        form_key=new_form_key(),
        values={},
    )


@router.post("/invoices/new")
def issue(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    number: Annotated[str, Form(max_length=40)],
    invoice_type: Annotated[str, Form(max_length=40)],
    issued_on: Annotated[str, Form(max_length=20)],
    buyer_name: Annotated[str, Form(max_length=200)],
    amount: Annotated[str, Form(max_length=30)],
    tax: Annotated[str, Form(max_length=30)],
    total: Annotated[str, Form(max_length=30)],
    seller_name: Annotated[str, Form(max_length=200)] = "",
    seller_code: Annotated[str, Form(max_length=30)] = "",
    buyer_code: Annotated[str, Form(max_length=30)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    direction: Annotated[str, Form(max_length=20)] = "outbound",
    tax_rate: Annotated[str, Form(max_length=20)] = "",
    remarks: Annotated[str, Form(max_length=500)] = "",
    form_key: Annotated[str, Form(max_length=60)] = "",
) -> Response:
    v.principal.require(INVOICE_WRITERS)
    body = {
        "number": number.strip(),
        "code": code.strip() or None,
        "invoice_type": invoice_type,
        "direction": direction,
        "issued_on": issued_on,
        "seller": {
            "name": seller_name.strip() or v.tenant_name,
            "taxpayer_code": seller_code.strip() or v.principal.tenant_id,
        },
        "buyer": {"name": buyer_name.strip(), "taxpayer_code": buyer_code.strip() or None},
        "amount": amount.strip(),
        "tax": tax.strip(),
        "total": total.strip(),
        "tax_rate": tax_rate.strip() or None,
        "remarks": remarks,
    }

    def do() -> str:
        try:
            request_ = IssueInvoiceRequest.model_validate(body)
        except ValidationError as e:
            raise _as_field_errors(e) from None
        result = services.ledger.issue_invoice(
            v.principal.tenant_id,
            request_.to_draft(),
            by(v, services),
            form_idempotency(form_key, sorted(body.items(), key=str)),
        )
        services.wait_for("invoice_status", result.position, 5)
        return f"/console/invoices/{result.invoice_key}"

    return act(services, v, "/console/invoices/new", do, v.t("inv.recorded"))


def _as_field_errors(e: ValidationError) -> ValidationFailedError:
    return ValidationFailedError(
        [
            InvalidFieldError(".".join(str(p) for p in err["loc"]), err["msg"], "invalid")
            for err in e.errors()
        ]
    )


# ---- one invoice ------------------------------------------------------------------------------


def command_fields(command: type[LifecycleCommand]) -> list[dict[str, Any]]:
    """A lifecycle command's fields, for its form (occurred_at last, optional)."""
    fields = []
    for name, info in command.model_fields.items():
        fields.append(
            {
                "name": name,
                "required": info.is_required(),
                "default": "" if info.is_required() or info.default is None else str(info.default),
                "time": name.endswith("_at"),
                "help": info.description or "",
            }
        )
    fields.sort(key=lambda f: (f["name"] == "occurred_at", not f["required"]))
    return fields


def allowed_steps(row: dict[str, Any]) -> list[type[LifecycleCommand]]:
    status = InvoiceStatus(row["status"])
    paper = InvoiceType(row["invoice_type"]).is_paper
    return [c for c in LIFECYCLE if status in ALLOWED_FROM[c.step] and (c.name != "void" or paper)]


def _summary(data: dict[str, Any]) -> str:
    keep = (
        "channel",
        "batch_ref",
        "attempt",
        "reason_code",
        "message",
        "platform_ref",
        "detected_by",
        "note",
        "scope",
        "amount",
        "red_invoice_key",
        "application_number",
        "learned_via",
        "was_missing",
        "reason",
    )
    parts = [f"{k}={data[k]}" for k in keep if data.get(k) not in (None, "", [], False)]
    return " · ".join(parts)


def invoice_id_of(services: Services, v: Viewer, ref: str) -> UUID:
    return services.ledger.resolve_invoice_id(v.principal.tenant_id, ref)


@router.get("/invoices/{ref}", response_class=HTMLResponse)
def invoice_page(
    request: Request,
    services: ServicesDep,
    v: ViewerDep,
    ref: str,
    as_of: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    tenant = v.principal.tenant_id
    invoice_id = invoice_id_of(services, v, ref)
    events = services.ledger.list_invoice_events(tenant, invoice_id)  # 404 if not this tenant's
    row = services.reader.get(tenant, invoice_id)
    if row is None:  # recorded, not yet in the view: wait for it briefly
        services.wait_for("invoice_status", events[-1].position, 5)
        row = services.reader.get(tenant, invoice_id)
    now = services.ledger.clock.now()
    services.access_log.record(v.principal, "history", str(invoice_id), now)
    at = beijing_time("as_of", as_of)
    state = None
    if at is not None:
        known, version = services.ledger.get_invoice_as_of(tenant, invoice_id, at)
        services.access_log.record(v.principal, "as-of", f"{invoice_id}@{at.isoformat()}", now)
        state = {"known": known is not None, "version": version, "status": known and known.status}
    timeline = [
        {
            "e": e,
            "summary": _summary(e.data),
            "later": state is not None and e.version > state["version"],
            "late": (
                datetime.fromisoformat(e.recorded_at) - datetime.fromisoformat(e.occurred_at)
            ).total_seconds()
            > 86400,
        }
        for e in events
    ]
    cases = services.cases.naming(tenant, invoice_id)
    attachments = _attachments(services, tenant, cases)
    return page(
        request,
        services,
        v,
        "invoice.html",
        row=row,
        timeline=timeline,
        as_of=at,
        as_of_text=as_of or "",
        state=state,
        steps=[(c, command_fields(c)) for c in allowed_steps(row)] if row else [],
        cases=cases,
        attachments=attachments,
        form_key=new_form_key(),
        issued_day=row["issued_on"] if row else None,
        may_reenter=row is not None and row["status"] in ("missing", "rejected"),
        end_of_day=time(23, 59, 59),
    )


def _attachments(services: Services, tenant: str, cases: list[dict[str, Any]]) -> list[Any]:
    found = []
    for case in cases:
        loader = services.reentry if case["case_type"] == "reentry" else services.complaints
        aggregate = loader.get(tenant, case["case_id"])
        for a in getattr(aggregate, "attachments", []) + getattr(aggregate, "evidence", []):
            found.append({**a, "case": case["number"]})
    return found


@router.post("/invoices/{ref}/steps/{name}")
def lifecycle_step(
    request: Request, services: ServicesDep, v: PostedDep, ref: str, name: str
) -> Response:
    command_type = BY_NAME.get(name)
    back = f"/console/invoices/{ref}"
    if command_type is None:
        return redirect_with(services, back, "error", v.t("ui.not_found"))
    form = request.state.form
    values: dict[str, Any] = {}
    for field in command_type.model_fields:
        raw = form.get(field)
        if isinstance(raw, str) and raw.strip():
            values[field] = raw.strip()
            if field.endswith("_at"):
                values[field] = beijing_time(field, raw)
    key = form.get("form_key")

    def do() -> str:
        v.principal.require(INVOICE_WRITERS)
        try:
            command = command_type.model_validate(values)
        except ValidationError as e:
            raise _as_field_errors(e) from None
        tenant = v.principal.tenant_id
        result = services.ledger.change_invoice(
            tenant,
            invoice_id_of(services, v, ref),
            command,
            by(v, services, command.occurred_at),
            form_idempotency(key if isinstance(key, str) else None, name, ref, sorted(values)),
        )
        services.wait_for("invoice_status", result.position, 5)
        return back

    return act(services, v, back, do, f"{v.t('action.' + name)} · {v.t('ui.done')}")
