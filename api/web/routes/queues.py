"""队列: the lists people act on, each with its count and the next step one click away:
missing and rejected invoices (upload again, apply for re-entry), uploads awaiting
acknowledgement (soonest due first), reconciliation mismatches, and the per-role queues of
re-entry applications (reviewer, approver) and the clerk's returned applications and replies."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from api.http.routes.invoices import _decode_cursor, _encode_cursor
from api.web.forms import ServicesDep, ViewerDep, new_form_key
from api.web.render import page
from api.web.session import Viewer
from application.access import APPROVERS, INVOICE_WRITERS, REVIEWERS
from application.ports import InvoiceFilter
from infrastructure.bootstrap import Services

router = APIRouter()
PAGE = 50


def tabs(services: Services, v: Viewer) -> list[dict[str, Any]]:
    """Every queue this viewer may see, with its count."""
    tenant, p = v.principal.tenant_id, v.principal
    counts = services.reader.counts(tenant)
    _, awaiting = services.timers.awaiting(tenant, 1)
    _, mismatched = services.reconciliation_store.mismatched(tenant, 1, 0)
    out = [
        {"name": "missing", "n": counts.get("missing", 0)},
        {"name": "rejected", "n": counts.get("rejected", 0)},
        {"name": "overdue", "n": awaiting},
        {"name": "mismatched", "n": mismatched},
    ]
    if p.may(REVIEWERS):
        n = len(services.cases.queue(tenant, "reentry", ["submitted"]))
        out.append({"name": "reviewer", "n": n})
    if p.may(APPROVERS):
        n = len(services.cases.queue(tenant, "reentry", ["reviewed"]))
        out.append({"name": "approver", "n": n})
    if p.may(INVOICE_WRITERS):
        n = len(services.cases.queue(tenant, "reentry", ["returned"]))
        out.append({"name": "clerk", "n": n})
    return out


@router.get("/queues/{name}", response_class=HTMLResponse)
def queue(
    request: Request,
    services: ServicesDep,
    v: ViewerDep,
    name: str,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    tenant, p = v.principal.tenant_id, v.principal
    context: dict[str, Any] = {"name": name, "tabs": tabs(services, v), "form_key": new_form_key()}
    if name in ("missing", "rejected"):
        after = _decode_cursor(cursor) if cursor else None
        rows, total = services.reader.list(tenant, InvoiceFilter(status=name), PAGE, after)
        context.update(rows=rows, total=total)
        if len(rows) == PAGE:
            context["next_cursor"] = _encode_cursor(rows[-1]["issued_on"], rows[-1]["invoice_id"])
    elif name == "overdue":
        timers, total = services.timers.awaiting(tenant, PAGE, offset)
        keys = services.reader.keys_for(tenant, [r.invoice_id for r in timers])
        context.update(
            timers=[(r, keys.get(r.invoice_id, str(r.invoice_id))) for r in timers],
            total=total,
            now=services.ledger.clock.now(),
            offset=offset,
            next_offset=offset + PAGE if offset + PAGE < total else None,
        )
    elif name == "mismatched":
        findings, total = services.reconciliation_store.mismatched(tenant, PAGE, offset)
        context.update(
            findings=findings,
            total=total,
            offset=offset,
            next_offset=offset + PAGE if offset + PAGE < total else None,
        )
    elif name in ("reviewer", "approver"):
        p.require(REVIEWERS if name == "reviewer" else APPROVERS)
        status = "submitted" if name == "reviewer" else "reviewed"
        context["cases"] = services.cases.queue(tenant, "reentry", [status])
    elif name == "clerk":
        p.require(INVOICE_WRITERS)
        today = services.ledger.today()
        context["returned"] = services.cases.queue(tenant, "reentry", ["returned"])
        context["replies"] = services.cases.queue(
            tenant, "complaint", ["open"], today + timedelta(days=3)
        )
        context["flagged"] = services.cases.queue(tenant, "complaint", ["resolved"], flagged=True)
    else:
        raise HTTPException(404, f"no queue {name}")
    return page(request, services, v, "queue.html", **context)
