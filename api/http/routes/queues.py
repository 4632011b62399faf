"""Work queues: the lists people act on (missing, rejected, awaiting acknowledgement)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.http.bounded import ConsistentAfter, Offset
from api.http.deps import PrincipalDep, ServicesDep, read_from
from api.http.routes.invoices import PROJECTION, list_invoices
from api.http.schemas import InvoicePage, shown
from domain.invoices.status import InvoiceStatus

router = APIRouter(prefix="/v1/queues", tags=["queues"])
Limit = Annotated[int, Query(ge=1, le=500)]


def _by_status(status: InvoiceStatus, summary: str):  # type: ignore[no-untyped-def]
    def route(
        request: Request,
        response: Response,
        principal: PrincipalDep,
        services: ServicesDep,
        limit: Limit = 50,
        cursor: str | None = None,
        consistent_after: ConsistentAfter = None,
    ) -> InvoicePage:
        return list_invoices(
            request,
            response,
            principal,
            services,
            status=status,
            limit=limit,
            cursor=cursor,
            consistent_after=consistent_after,
            as_of=None,
        )

    router.get(
        f"/{status.value}",
        response_model=InvoicePage,
        summary=summary,
        name=f"{status.value}_queue",
    )(route)


_by_status(InvoiceStatus.MISSING, "Invoices the platform does not have (newest issue date first)")
_by_status(InvoiceStatus.REJECTED, "Invoices the platform refused")


class AwaitingOut(BaseModel):
    invoice_id: UUID
    invoice_key: str
    attempt: int
    uploaded_at: str
    window_hours: float
    due_at: str


class AwaitingPage(BaseModel):
    items: list[AwaitingOut]
    total: int


@router.get(
    "/overdue",
    response_model=AwaitingPage,
    summary="Uploaded, no acknowledgement yet: soonest due first",
)
def overdue(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    consistent_after: ConsistentAfter = None,
) -> AwaitingPage:
    reads = read_from(services, request, response, "ack_timers", consistent_after)
    rows, total = reads.timers.awaiting(principal.tenant_id, limit, offset)
    keys = reads.reader.keys_for(principal.tenant_id, [r.invoice_id for r in rows])
    return AwaitingPage(
        total=total,
        items=[
            AwaitingOut(
                invoice_id=r.invoice_id,
                invoice_key=keys.get(r.invoice_id, str(r.invoice_id)),
                attempt=r.attempt,
                uploaded_at=shown(r.started_at) or "",
                window_hours=r.window_seconds / 3600,
                due_at=shown(r.due_at) or "",
            )
            for r in rows
        ],
    )


class MismatchOut(BaseModel):
    invoice_key: str | None
    invoice_id: UUID | None
    line: int | None
    differences: list[dict[str, str]]


class MismatchPage(BaseModel):
    items: list[MismatchOut]
    total: int


@router.get(
    "/mismatched",
    response_model=MismatchPage,
    summary="Invoices the platform holds with other amounts, dates, parties or status",
)
def mismatched(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MismatchPage:
    rows, total = services.reconciliation_store.mismatched(principal.tenant_id, limit, offset)
    return MismatchPage(
        total=total,
        items=[
            MismatchOut(
                invoice_key=f.invoice_key,
                invoice_id=f.invoice_id,
                line=f.line,
                differences=list(f.differences),
            )
            for f in rows
        ],
    )


class DayCounts(BaseModel):
    day: date
    entered: dict[str, int]


@router.get(
    "/trend",
    response_model=list[DayCounts],
    summary="How many invoices entered each status, per Beijing day",
)
def trend(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    since: date,
    until: date,
    consistent_after: ConsistentAfter = None,
) -> list[DayCounts]:
    from domain.errors import InvalidFieldError

    if until < since or (until - since).days > 366:
        raise InvalidFieldError("until", "must be on or after since, within a year", "range")
    reads = read_from(services, request, response, PROJECTION, consistent_after)
    days: dict[date, dict[str, int]] = {}
    for day, status, n in reads.reader.daily(principal.tenant_id, since, until):
        days.setdefault(day, {})[status] = n
    return [DayCounts(day=d, entered=days[d]) for d in sorted(days)]
