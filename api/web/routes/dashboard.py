"""工作台: today's picture. Counts per status, missing and overdue today, my to-do, the per-day
trend of status entries (an SVG drawn here: no chart script), projection lag and the latest
checkpoint."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api.web.forms import ServicesDep, ViewerDep
from api.web.render import page
from application.access import APPROVERS, INVOICE_WRITERS, REVIEWERS
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Services

router = APIRouter()
TREND = {  # one colour per status in the chart (tags pair blue and red statuses; bars must not)
    "issued": "#91caff",
    "submitted": "#1677ff",
    "acknowledged": "#52c41a",
    "missing": "#f5222d",
    "rejected": "#fa8c16",
    "re_entered": "#722ed1",
}
TREND_STATUSES = tuple(TREND)


def todo(services: Services, v: Any) -> list[dict[str, Any]]:
    """What waits for this viewer's roles, each with its count and link."""
    tenant, items = v.principal.tenant_id, []
    if v.principal.may(REVIEWERS):
        n = len(services.cases.queue(tenant, "reentry", ["submitted"]))
        items.append({"label": "queue.reviewer", "n": n, "href": "/console/queues/reviewer"})
    if v.principal.may(APPROVERS):
        n = len(services.cases.queue(tenant, "reentry", ["reviewed"]))
        items.append({"label": "queue.approver", "n": n, "href": "/console/queues/approver"})
    if v.principal.may(INVOICE_WRITERS):
        n = len(services.cases.queue(tenant, "reentry", ["returned"]))
        items.append({"label": "queue.returned", "n": n, "href": "/console/queues/clerk"})
    return items


def trend_svg(days: list[Any], rows: list[tuple[Any, str, int]]) -> dict[str, Any]:
    """Bars per day for the statuses that matter, as SVG rectangles (stacked)."""
    by_day: dict[Any, dict[str, int]] = {d: {} for d in days}
    for day, status, n in rows:
        if day in by_day and status in TREND_STATUSES:
            by_day[day][status] = n
    peak = max([sum(v.values()) for v in by_day.values()] + [1])
    width, height, gap = 1200, 160, 2
    bar = max((width - gap * len(days)) / max(len(days), 1), 2)
    bars = []
    for i, day in enumerate(days):
        y = float(height)
        for status in TREND_STATUSES:
            n = by_day[day].get(status, 0)
            if not n:
                continue
            h = n / peak * (height - 10)
            y -= h
            colour = TREND[status]
            bars.append(
                {
                    "x": round(i * (bar + gap), 1),
                    "y": round(y, 1),
                    "w": round(bar, 1),
                    "h": round(h, 1),
                    "c": colour,
                    "title": f"{day} {status} {n}",
                }
            )
    legend = list(TREND.items())
    return {"bars": bars, "width": width, "height": height, "peak": peak, "legend": legend}


@router.get("", response_class=HTMLResponse)
def dashboard(
    request: Request,
    services: ServicesDep,
    v: ViewerDep,
    days: Annotated[int, Query(ge=7, le=90)] = 30,
) -> HTMLResponse:
    tenant = v.principal.tenant_id
    today = services.ledger.today()
    counts = services.reader.counts(tenant)
    first = today - timedelta(days=days - 1)
    rows = services.reader.daily(tenant, first, today)
    missing_today = sum(n for d, s, n in rows if d == today and s == "missing")
    now = services.ledger.clock.now()
    _, awaiting = services.timers.awaiting(tenant, 1)
    return page(
        request,
        services,
        v,
        "dashboard.html",
        statuses=[s.value for s in InvoiceStatus],
        counts=counts,
        total=sum(counts.values()),
        missing_today=missing_today,
        overdue=services.timers.overdue_count(tenant, now),
        awaiting=awaiting,
        todo=todo(services, v),
        days=days,
        first=first,
        today=today,
        trend=trend_svg([first + timedelta(days=i) for i in range(days)], rows),
        projections=services.projection_status(),
    )
