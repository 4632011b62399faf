"""Signed callbacks from a tax service provider: acknowledgements and rejections.

Authenticated by signature, not API key: `X-Fapiao-Tenant`, `X-Fapiao-Timestamp` (unix
seconds) and `X-Fapiao-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>`.
Anything unsigned, stale (over 5 minutes) or replayed gets 401 and changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from api.http.deps import Once, PrincipalDep, ServicesDep, get_services, provenance
from api.http.errors import UnauthenticatedError
from api.http.routes.invoices import _out
from api.http.schemas import CommandResponse
from application.access import Role
from application.dto import Idempotency
from application.invoices.lifecycle import AcknowledgeRequest, RejectRequest
from application.monitoring.secret_rotation import rotate_callback_secret
from domain.base import Provenance, Source
from infrastructure.bootstrap import Services
from infrastructure.monitoring.callback_signatures import CallbackRejectedError

router = APIRouter(prefix="/v1/platform", tags=["platform callbacks"])


class CallbackIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "acknowledged",
                    "invoice_key": "26112000000135114086",
                    "platform_ref": "SW0A1B2C3D4E",
                    "at": "2026-11-20T10:21:07+08:00",
                }
            ]
        },
    )
    kind: Literal["acknowledged", "rejected"]
    invoice_key: str
    at: AwareDatetime
    platform_ref: str = ""
    reason_code: str = ""
    message: str = ""


class SecretOut(BaseModel):
    secret: str


@router.post(
    "/callbacks",
    response_model=CommandResponse,
    summary="An acknowledgement or rejection from the provider, HMAC-signed",
    responses={401: {"description": "Bad, stale or replayed signature"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": CallbackIn.model_json_schema()}},
            "required": True,
        }
    },
)
async def callback(
    request: Request,
    x_fapiao_tenant: Annotated[str, Header()],
    x_fapiao_timestamp: Annotated[str, Header()],
    x_fapiao_signature: Annotated[str, Header()],
) -> CommandResponse:
    body = await request.body()  # the exact bytes that were signed
    services = get_services(request)
    return await run_in_threadpool(
        _handle,
        services,
        x_fapiao_tenant.strip().upper(),
        x_fapiao_timestamp,
        x_fapiao_signature,
        body,
    )


def _handle(
    services: Services, tenant: str, timestamp: str, signature: str, body: bytes
) -> CommandResponse:
    now = services.ledger.clock.now()
    try:
        services.callbacks.verify(tenant, timestamp, signature, body, now)
    except CallbackRejectedError as e:
        raise UnauthenticatedError(f"callback refused: {e}") from None
    try:
        notice = CallbackIn.model_validate_json(body)
    except ValidationError as e:
        from fastapi.exceptions import RequestValidationError

        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        ) from None
    ledger = services.ledger
    invoice_id = ledger.resolve_invoice_id(tenant, notice.invoice_key)
    by = Provenance(f"callback:{tenant}", Source.CALLBACK, notice.at)
    digest = hashlib.sha256(body).hexdigest()
    # A provider resending the same notice (new timestamp, same body) gets the first answer.
    idem = Idempotency(f"callback:{digest[:40]}", digest)
    if notice.kind == "acknowledged":
        result = ledger.change_invoice(
            tenant,
            invoice_id,
            AcknowledgeRequest(
                platform_ref=notice.platform_ref, acknowledged_at=notice.at, learned_via="callback"
            ),
            by,
            idem,
        )
    else:
        result = ledger.change_invoice(
            tenant,
            invoice_id,
            RejectRequest(reason_code=notice.reason_code, message=notice.message),
            by,
            idem,
        )
    return _out(result)


@router.post(
    "/callback-secret",
    response_model=SecretOut,
    status_code=201,
    summary="Issue a new callback secret for this tenant's provider (shown once)",
    description="With an Idempotency-Key, one rotation per key: the secret is shown once and "
    "not kept in the receipt, so a repeat of the key is answered 409 `secret-shown-once`.",
    dependencies=[Once],
)
def rotate_secret(principal: PrincipalDep, services: ServicesDep) -> SecretOut:
    principal.require(frozenset({Role.ADMIN}))
    secret = rotate_callback_secret(
        services.ledger,
        services.callbacks,
        principal.tenant_id,
        provenance(principal, None, services),
    )
    return SecretOut(secret=secret)
