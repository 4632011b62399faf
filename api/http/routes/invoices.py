"""Invoice commands and queries under /v1. Each route: parse, one application call, shape."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime

from api.http.deps import IdempotencyKey, PrincipalDep, ServicesDep, idempotency, provenance
from api.http.responses import OrjsonResponse
from api.http.schemas import (
    AcknowledgeRequest,
    BatchResponse,
    CommandBase,
    CommandResponse,
    EventOut,
    InvoiceOut,
    InvoicePage,
    IssueBatchRequest,
    IssueInvoiceRequest,
    MissingReportRequest,
    RedReversalRequest,
    RejectRequest,
    StatusCounts,
    SubmissionFailureRequest,
    SubmitRequest,
    VoidRequest,
)
from application.access import INVOICE_WRITERS, Principal
from application.dto import CommandResult, Idempotency
from application.errors import InvoiceNotFoundError
from application.invoices.ledger import InvoiceLedger
from application.ports import InvoiceFilter
from domain.base import Provenance
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Services

router = APIRouter(prefix="/v1", tags=["invoices"])
PROJECTION = "invoice_status"

ConsistentAfter = Annotated[
    int | None,
    Query(ge=0, description="Wait (bounded) until the view includes this log position"),
]
ERRORS = {
    401: {"description": "No or bad API key"},
    403: {"description": "Role may not do this"},
    404: {"description": "No such invoice for this tenant"},
    409: {"description": "Not allowed in the current status"},
    422: {"description": "Invalid input; `errors` names each field and rule"},
}


def _out(result: CommandResult) -> CommandResponse:
    return CommandResponse.model_validate(result, from_attributes=True)


def _consistent(services: ServicesDep, position: int | None, projection: str = PROJECTION) -> None:
    if position:
        services.wait_for(projection, position, services.settings.consistent_read_timeout)


@router.post(
    "/invoices",
    status_code=201,
    response_model=CommandResponse,
    responses=ERRORS,
    summary="Issue (record) an invoice",
)
def issue_invoice(
    body: IssueInvoiceRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> OrjsonResponse:
    principal.require(INVOICE_WRITERS)
    result = services.ledger.issue_invoice(
        principal.tenant_id,
        body.to_draft(),
        provenance(principal, body.occurred_at, services),
        idempotency(request, key, body),
    )
    return OrjsonResponse(
        _out(result).model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/invoices/{result.invoice_id}"},
    )


@router.post(
    "/invoice-batches",
    status_code=201,
    response_model=BatchResponse,
    responses=ERRORS,
    summary="Issue many invoices atomically (all or none)",
)
def issue_batch(
    body: IssueBatchRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> BatchResponse:
    principal.require(INVOICE_WRITERS)
    by = provenance(principal, None, services)
    results = services.ledger.issue_invoices(
        principal.tenant_id,
        [inv.to_draft() for inv in body.invoices],
        by,
        idempotency(request, key, body),
    )
    return BatchResponse(
        results=[_out(r) for r in results], position=max(r.position for r in results)
    )


def _command(name: str, summary: str):  # type: ignore[no-untyped-def]
    return router.post(
        f"/invoices/{{ref}}/{name}",
        response_model=CommandResponse,
        responses=ERRORS,
        summary=summary,
    )


Call = Callable[[InvoiceLedger, str, UUID, Provenance, Idempotency | None], CommandResult]


def _lifecycle(
    ref: str,
    body: CommandBase,
    request: Request,
    principal: Principal,
    services: Services,
    key: str | None,
    call: Call,
) -> CommandResponse:
    """The shared shape of every lifecycle command: authorise, resolve, stamp, call once."""
    principal.require(INVOICE_WRITERS)
    ledger = services.ledger
    tenant = principal.tenant_id
    return _out(
        call(
            ledger,
            tenant,
            ledger.resolve_invoice_id(tenant, ref),
            provenance(principal, body.occurred_at, services),
            idempotency(request, key, body),
        )
    )


@_command("submissions", "Record an upload attempt to the tax platform")
def submit(
    ref: str,
    body: SubmitRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.submit_invoice(t, i, by, body.channel, body.batch_ref, idem),
    )


@_command("submission-failures", "Record that an upload did not reach the platform")
def fail_submission(
    ref: str,
    body: SubmissionFailureRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.record_submission_failure(
            t, i, by, body.reason_code, body.detail, idem
        ),
    )


@_command("acknowledgements", "Record the platform's acknowledgement (late ones included)")
def acknowledge(
    ref: str,
    body: AcknowledgeRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.acknowledge_invoice(
            t, i, by, body.platform_ref, body.acknowledged_at, body.learned_via, idem
        ),
    )


@_command("rejections", "Record the platform's rejection")
def reject(
    ref: str,
    body: RejectRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.reject_invoice(
            t, i, by, body.reason_code, body.message, idem
        ),
    )


@_command("missing-reports", "Mark an invoice missing from the platform")
def report_missing(
    ref: str,
    body: MissingReportRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.report_missing(
            t, i, by, body.detected_by, body.note, body.evidence, idem
        ),
    )


@_command("voids", "Void a paper invoice")
def void(
    ref: str,
    body: VoidRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.void_invoice(t, i, by, body.reason, idem),
    )


@_command("red-reversals", "Record a red-letter reversal (full or partial)")
def red_reverse(
    ref: str,
    body: RedReversalRequest,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKey = None,
) -> CommandResponse:
    # A float amount goes to the domain as is, so it is refused there with its rule.
    amount = (
        body.amount if body.amount is None or isinstance(body.amount, float) else str(body.amount)
    )
    return _lifecycle(
        ref,
        body,
        request,
        principal,
        services,
        key,
        lambda lg, t, i, by, idem: lg.red_reverse_invoice(
            t,
            i,
            by,
            body.confirmation_number,
            body.red_invoice_key,
            body.scope,
            body.reason_code,
            amount,
            idem,
        ),
    )  # type: ignore[arg-type]


@router.get(
    "/invoices/{ref}",
    response_model=InvoiceOut,
    responses=ERRORS,
    summary="One invoice's current status (by id or canonical key)",
)
def get_invoice(
    ref: str,
    principal: PrincipalDep,
    services: ServicesDep,
    consistent_after: ConsistentAfter = None,
) -> InvoiceOut:
    _consistent(services, consistent_after)
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, ref)
    row = services.reader.get(principal.tenant_id, invoice_id)
    if row is None:
        raise InvoiceNotFoundError(ref)
    return InvoiceOut.from_row(row)


def _encode_cursor(issued_on: date, invoice_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{issued_on.isoformat()}|{invoice_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[date, UUID]:
    from domain.errors import InvalidFieldError

    try:
        issued_on, invoice_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return date.fromisoformat(issued_on), UUID(invoice_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidFieldError("cursor", "not a cursor this API returned", "cursor") from None


@router.get(
    "/invoices",
    response_model=InvoicePage,
    responses=ERRORS,
    summary="List invoices, newest issue date first, with keyset pagination",
)
def list_invoices(
    principal: PrincipalDep,
    services: ServicesDep,
    status: InvoiceStatus | None = None,
    issued_from: date | None = None,
    issued_to: date | None = None,
    seller: Annotated[str | None, Query(description="Seller's taxpayer code")] = None,
    buyer: Annotated[str | None, Query(description="Buyer's taxpayer code")] = None,
    min_total: Decimal | None = None,
    max_total: Decimal | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    consistent_after: ConsistentAfter = None,
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="Statuses as the ledger knew them then (events recorded by then)"),
    ] = None,
) -> InvoicePage:
    _consistent(services, consistent_after, "status_history" if as_of else PROJECTION)
    filters = InvoiceFilter(
        status.value if status else None,
        issued_from,
        issued_to,
        seller.upper() if seller else None,
        buyer.upper() if buyer else None,
        min_total,
        max_total,
    )
    after = _decode_cursor(cursor) if cursor else None
    if as_of is None:
        rows, total = services.reader.list(principal.tenant_id, filters, limit, after)
    else:
        for view in ("invoice_status", "status_history"):  # static fields + intervals
            services.bring_up_to_date(view, services.settings.consistent_read_timeout)
        rows, total = services.reader.list_as_of(principal.tenant_id, filters, as_of, limit, after)
        services.access_log.record(
            principal, "status-as-of", as_of.isoformat(), services.ledger.clock.now()
        )
    next_cursor = None
    if len(rows) == limit:
        next_cursor = _encode_cursor(rows[-1]["issued_on"], rows[-1]["invoice_id"])
    return InvoicePage(
        items=[InvoiceOut.from_row(r) for r in rows], total=total, next_cursor=next_cursor
    )


@router.get("/invoice-counts", response_model=StatusCounts, summary="How many invoices per status")
def counts(
    principal: PrincipalDep, services: ServicesDep, consistent_after: ConsistentAfter = None
) -> StatusCounts:
    _consistent(services, consistent_after)
    by_status = services.reader.counts(principal.tenant_id)
    return StatusCounts(counts=by_status, total=sum(by_status.values()))


@router.get(
    "/invoices/{ref}/events",
    response_model=list[EventOut],
    responses=ERRORS,
    summary="Every event of one invoice, oldest first, from the event store",
)
def invoice_events(ref: str, principal: PrincipalDep, services: ServicesDep) -> list[EventOut]:
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, ref)
    services.access_log.record(principal, "events", str(invoice_id), services.ledger.clock.now())
    return [
        EventOut.model_validate(e, from_attributes=True)
        for e in services.ledger.list_invoice_events(principal.tenant_id, invoice_id)
    ]
