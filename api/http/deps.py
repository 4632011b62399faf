"""Request dependencies: the services built at startup, the caller's key, and provenance."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.http.errors import UnauthenticatedError
from application.access import Principal
from application.dto import Idempotency
from domain.base import Provenance, Source
from infrastructure.bootstrap import Services

bearer = HTTPBearer(auto_error=False, description="An API key from `fapiao keys create`")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_actor_user: Annotated[
        str | None, Header(description="The person an ERP acts for; recorded in `actor`")
    ] = None,
) -> Principal:
    if credentials is None:
        raise UnauthenticatedError("send an API key: Authorization: Bearer fpl_...")
    principal = services.keys.authenticate(credentials.credentials)
    if principal is None:
        raise UnauthenticatedError("the API key is unknown or revoked")
    if x_actor_user:
        principal = Principal(principal.tenant_id, principal.key_id, principal.roles, x_actor_user)
    request.state.principal = principal  # for the request's log line (tenant, key id)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def provenance(
    principal: Principal, occurred_at: datetime | None, services: Services
) -> Provenance:
    return Provenance(principal.actor, Source.API, occurred_at or services.ledger.clock.now())


def idempotency(
    request: Request, key: str | None, body: BaseModel | dict[str, object]
) -> Idempotency | None:
    """The key plus a fingerprint of method, path and the canonical body."""
    if key is None:
        return None
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    canonical = orjson.dumps(
        {"method": request.method, "path": request.url.path, "body": payload},
        option=orjson.OPT_SORT_KEYS,
    )
    return Idempotency(key, hashlib.sha256(canonical).hexdigest())


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat-safe retries: the same key and body return the first answer",
    ),
]
