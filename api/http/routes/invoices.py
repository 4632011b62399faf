"""Invoice commands and queries under /v1. Each route: parse, one application call, shape.

No `from __future__ import annotations` here: the lifecycle routes annotate their body with a
class chosen at runtime, which FastAPI must see as the class, not as a string.
"""

import base64
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.http.bounded import MAX_POSITION, ConsistentAfter, MoneyFilter
from api.http.deps import (
    CALLER_OPENAPI,
    IdempotencyKey,
    PrincipalDep,
    ServicesDep,
    caller,
    idempotency,
    note_read,
    provenance,
    read_from,
)
from api.http.responses import OrjsonResponse
from api.http.schemas import (
    BatchResponse,
    CommandResponse,
    EventOut,
    InvoiceOut,
    InvoicePage,
    IssueBatchRequest,
    IssueInvoiceRequest,
    StatusCounts,
    invoice_fields,
)
from application.access import INVOICE_WRITERS, Principal
from application.dto import CommandResult
from application.invoices.lifecycle import (
    LIFECYCLE,
    AcknowledgeRequest,
    LifecycleCommand,
    MissingReportRequest,
    RedReversalRequest,
    RejectRequest,
    SubmissionFailureRequest,
    SubmitRequest,
    VoidRequest,
)
from application.ports import InvoiceFilter
from application.service_errors import InvoiceNotFoundError
from domain.errors import InvalidFieldError
from domain.invoices import identity
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Reads, Services

router = APIRouter(prefix="/v1", tags=["invoices"])
PROJECTION = "invoice_status"

ERRORS = {
    401: {"description": "No or bad API key"},
    403: {"description": "Role may not do this"},
    404: {"description": "No such invoice for this tenant"},
    409: {"description": "Not allowed in the current status"},
    422: {"description": "Invalid input; `errors` names each field and rule"},
}


def _out(result: CommandResult) -> CommandResponse:
    return CommandResponse.model_validate(result, from_attributes=True)


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
    idempotency_key: IdempotencyKey = None,
) -> OrjsonResponse:
    principal.require(INVOICE_WRITERS)
    result = services.ledger.issue_invoice(
        principal.tenant_id,
        body.to_draft(),
        provenance(principal, body.occurred_at, services),
        idempotency(request, idempotency_key, body),
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
    idempotency_key: IdempotencyKey = None,
) -> BatchResponse:
    principal.require(INVOICE_WRITERS)
    by = provenance(principal, None, services)
    results = services.ledger.issue_invoices(
        principal.tenant_id,
        [inv.to_draft() for inv in body.invoices],
        by,
        idempotency(request, idempotency_key, body),
    )
    return BatchResponse(
        results=[_out(r) for r in results], position=max(r.position for r in results)
    )


# The URLs are public and written out; each step's body, summary and decision are declared
# once in application/invoices/lifecycle.py.
PATHS: dict[type[LifecycleCommand], str] = {
    SubmitRequest: "submissions",
    SubmissionFailureRequest: "submission-failures",
    AcknowledgeRequest: "acknowledgements",
    RejectRequest: "rejections",
    MissingReportRequest: "missing-reports",
    VoidRequest: "voids",
    RedReversalRequest: "red-reversals",
}


def _lifecycle_route(command_type: type[LifecycleCommand]) -> Callable[..., CommandResponse]:
    """A route whose body is `command_type`: authorise, resolve, stamp, apply once."""

    def route(
        ref: str,
        body: command_type,  # type: ignore[valid-type]
        request: Request,
        principal: PrincipalDep,
        services: ServicesDep,
        idempotency_key: IdempotencyKey = None,
    ) -> CommandResponse:
        principal.require(INVOICE_WRITERS)
        ledger = services.ledger
        tenant = principal.tenant_id
        return _out(
            ledger.change_invoice(
                tenant,
                ledger.resolve_invoice_id(tenant, ref),
                body,
                provenance(principal, body.occurred_at, services),
                idempotency(request, idempotency_key, body),
            )
        )

    return route


for _command_type in LIFECYCLE:
    router.add_api_route(
        f"/invoices/{{ref}}/{PATHS[_command_type]}",
        _lifecycle_route(_command_type),
        methods=["POST"],
        name=_command_type.name,
        summary=_command_type.summary,
        response_model=CommandResponse,
        responses=ERRORS,
    )


_CONSISTENT_DOC: str = ConsistentAfter.__metadata__[0].description  # type: ignore[attr-defined]
_POSITION = TypeAdapter(Annotated[int, Field(ge=0, le=MAX_POSITION)])
# What FastAPI would document for `ref: str, consistent_after: ConsistentAfter = None`
# (tests/e2e/test_read_path.py compares).
_GET_PARAMETERS: list[dict[str, Any]] = [
    {"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "title": "Ref"}},
    {
        "name": "consistent_after",
        "in": "query",
        "required": False,
        "schema": {
            "anyOf": [
                {"type": "integer", "maximum": MAX_POSITION, "minimum": 0},
                {"type": "null"},
            ],
            "description": _CONSISTENT_DOC,
            "title": "Consistent After",
        },
        "description": _CONSISTENT_DOC,
    },
]


@router.get(
    "/invoices/{ref}",
    response_model=InvoiceOut,
    response_class=OrjsonResponse,
    responses=ERRORS,
    summary="One invoice's current status (by id or canonical key)",
    openapi_extra={
        **CALLER_OPENAPI,
        "parameters": [*_GET_PARAMETERS, *CALLER_OPENAPI["parameters"]],
    },
)
async def get_invoice(request: Request) -> Response:
    """The hot read: the caller from the key cache on the event loop (`deps.caller`, no
    dependency resolution), its two parameters read here (the checks and 422s FastAPI gives,
    without its per-request parameter machinery), then one query, awaited on the loop where
    the cell allows it (AsyncStatusReader), else in a worker thread; the row written by orjson
    as InvoiceOut's JSON (tests/e2e/test_read_path.py holds all of it)."""
    ref: str = request.path_params["ref"]
    consistent_after = _consistent_after(request)
    services, principal = await caller(request)
    fast = services.fast_reader
    if fast is None or consistent_after:  # SQLite, a replica, tracing, or a wait asked for
        return await run_in_threadpool(
            _one_invoice, services, principal, request, ref, consistent_after
        )
    row = await fast.get(principal.tenant_id, _invoice_id(principal.tenant_id, ref))
    return _answer(request, ref, row, None)


def _consistent_after(request: Request) -> int | None:
    """`consistent_after` as FastAPI reads a ConsistentAfter query parameter: absent is None,
    else (the last one sent) an integer within its bounds, or the 422 naming the parameter and
    the rule (an empty value too)."""
    raw = request.query_params.get("consistent_after")
    if raw is None:
        return None
    try:
        return _POSITION.validate_python(raw)
    except ValidationError as e:
        raise RequestValidationError(
            [{**error, "loc": ("query", "consistent_after", *error["loc"])} for error in e.errors()]
        ) from None


def _one_invoice(
    services: Services,
    principal: Principal,
    request: Request,
    ref: str,
    consistent_after: int | None,
) -> Response:
    reads = services.reads(PROJECTION, consistent_after)
    row = reads.reader.get(principal.tenant_id, _invoice_id(principal.tenant_id, ref))
    return _answer(request, ref, row, reads)


def _answer(
    request: Request, ref: str, row: dict[str, Any] | None, reads: Reads | None
) -> Response:
    """The row as InvoiceOut's JSON with where it was read (None: the loop, on the primary)."""
    if row is None:  # another tenant's invoice too: not found, never forbidden
        raise InvoiceNotFoundError(ref)
    answer = OrjsonResponse(invoice_fields(row))
    note_read(request, answer, reads)
    return answer


def _invoice_id(tenant_id: str, ref: str) -> UUID:
    """A uuid, or the id a canonical key (`20 digits` or `code:number`) derives; a ref that is
    neither is not found. No look-up: the row's absence says not found, by the ref sent."""
    try:
        return UUID(ref)
    except ValueError:
        pass
    try:
        return identity.invoice_id(tenant_id, identity.parse_canonical_key(ref))
    except InvalidFieldError:
        raise InvoiceNotFoundError(ref) from None


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
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    status: InvoiceStatus | None = None,
    issued_from: date | None = None,
    issued_to: date | None = None,
    seller: Annotated[str | None, Query(description="Seller's taxpayer code")] = None,
    buyer: Annotated[str | None, Query(description="Buyer's taxpayer code")] = None,
    min_total: MoneyFilter = None,
    max_total: MoneyFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    consistent_after: ConsistentAfter = None,
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="Statuses as the ledger knew them then (events recorded by then)"),
    ] = None,
) -> InvoicePage:
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
        reads = read_from(services, request, response, PROJECTION, consistent_after)
        rows, total = reads.reader.list(principal.tenant_id, filters, limit, after)
    else:
        for view in ("invoice_status", "status_history"):  # static fields + intervals
            services.bring_up_to_date(view, services.settings.consistent_read_timeout)
        # History from the replica only once it has replayed all of it (else the primary).
        head = max(consistent_after or 0, services.worker("status_history").position())
        reads = read_from(services, request, response, "status_history", head)
        rows, total = reads.reader.list_as_of(principal.tenant_id, filters, as_of, limit, after)
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
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    consistent_after: ConsistentAfter = None,
) -> StatusCounts:
    reads = read_from(services, request, response, PROJECTION, consistent_after)
    by_status = reads.reader.counts(principal.tenant_id)
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


# The hot read is matched first: routes are tried in order, and no other GET here has its shape
# (/v1/invoices/<one segment>), so moving it ahead changes no answer, only the ~10 regex
# matches every GET of one invoice made before reaching it.
router.routes.sort(key=lambda route: getattr(route, "endpoint", None) is not get_invoice)
