"""History for auditors: an invoice's state as the ledger knew it at any time T, and who read
history or exported evidence (recorded for auditor and compliance keys, listed for admins)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel

from api.http.bounded import OptionalPosition, Position
from api.http.deps import PrincipalDep, ServicesDep
from api.http.routes.invoices import EventOut
from api.http.schemas import shown, shown_times
from application.access import Role
from application.invoices.ledger import _jsonable
from infrastructure.projections.streams import tenant_events

router = APIRouter(prefix="/v1", tags=["audit"])


class AsOfOut(BaseModel):
    invoice_id: str
    as_of: str
    known: bool
    version: int
    status: str | None
    state: dict[str, Any]


@router.get(
    "/invoices/{ref}/as-of",
    response_model=AsOfOut,
    summary="The invoice as the ledger knew it at `at` (events recorded by then)",
)
def as_of(
    ref: str, at: Annotated[AwareDatetime, Query()], principal: PrincipalDep, services: ServicesDep
) -> AsOfOut:
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, ref)
    invoice, version = services.ledger.get_invoice_as_of(principal.tenant_id, invoice_id, at)
    services.access_log.record(
        principal, "as-of", f"{invoice_id}@{at.isoformat()}", services.ledger.clock.now()
    )
    state = (
        {}
        if invoice is None
        else {
            k.lstrip("_"): _jsonable(v) for k, v in vars(invoice).items() if k != "_pending_events"
        }
    )
    return AsOfOut(
        invoice_id=str(invoice_id),
        as_of=shown(at) or "",
        known=invoice is not None,
        version=version,
        status=None if invoice is None else invoice.status.value,
        state=state,
    )


@router.get(
    "/invoices/{ref}/history",
    response_model=list[EventOut],
    summary="Every event of the invoice, oldest first (the read is recorded)",
)
def history(ref: str, principal: PrincipalDep, services: ServicesDep) -> list[EventOut]:
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, ref)
    events = services.ledger.list_invoice_events(principal.tenant_id, invoice_id)
    services.access_log.record(principal, "history", str(invoice_id), services.ledger.clock.now())
    return [EventOut.model_validate(e, from_attributes=True) for e in events]


class AccessOut(BaseModel):
    at: str
    actor: str
    roles: str
    action: str
    subject: str


@router.get(
    "/access-log",
    response_model=list[AccessOut],
    summary="Admins: who read history or exported evidence, newest first",
)
def access(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AccessOut]:
    principal.require(frozenset({Role.ADMIN}))
    return [
        AccessOut(
            at=shown(r["at"]) or "",
            actor=r["actor"],
            roles=r["roles"],
            action=r["action"],
            subject=r["subject"],
        )
        for r in services.access_log.list(principal.tenant_id, limit)
    ]


@router.get(
    "/ledger/events",
    summary="The tenant's events in log order, as NDJSON (streamed)",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def ledger_events(
    principal: PrincipalDep,
    services: ServicesDep,
    after_position: Position = 0,
    to_position: OptionalPosition = None,
    since: Annotated[AwareDatetime | None, Query(description="recorded_at from")] = None,
    until: Annotated[AwareDatetime | None, Query(description="recorded_at up to")] = None,
) -> StreamingResponse:
    principal.require(frozenset({Role.AUDITOR, Role.COMPLIANCE, Role.ADMIN}))
    services.bring_up_to_date("streams", services.settings.consistent_read_timeout)
    services.access_log.record(
        principal,
        "ledger-events",
        f"after {after_position} to {to_position} since {since} until {until}",
        services.ledger.clock.now(),
    )
    events = tenant_events(
        services.ledger,
        services.engine,
        principal.tenant_id,
        after_position,
        to_position,
        since,
        until,
    )
    return StreamingResponse(
        (orjson.dumps(shown_times(e)) + b"\n" for e in events), media_type="application/x-ndjson"
    )
