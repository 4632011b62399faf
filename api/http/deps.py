"""Request dependencies: the services built at startup, the caller's key, and provenance."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.http.errors import UnauthenticatedError
from application.access import Principal
from application.command_keys import enter_command_key
from application.dto import Idempotency
from domain.base import Provenance, Source
from domain.errors import InvalidFieldError
from infrastructure.bootstrap import Cells, Reads, Services

bearer = HTTPBearer(auto_error=False, description="An API key from `fapiao keys create`")


def get_services(request: Request) -> Services:
    """The services of the caller's database: with tenants routed to several (cells), the cell
    of the bearer key, or of X-Fapiao-Tenant for signed callbacks; else the one database."""
    chosen: Services | None = getattr(request.state, "services", None)
    if chosen is not None:
        return chosen
    chosen = request.app.state.services
    cells: Cells | None = getattr(request.app.state, "cells", None)
    if cells is not None and cells.routed:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        tenant = request.headers.get("x-fapiao-tenant")
        if scheme.lower() == "bearer" and token:
            chosen = cells.for_key(token.strip())
        elif tenant:
            chosen = cells.for_tenant(tenant)
    request.state.services = chosen
    return chosen


async def services_dependency(request: Request) -> Services:
    """`get_services` as a dependency: on the event loop (no thread hop) unless finding the
    key's cell may read key tables."""
    cells: Cells | None = getattr(request.app.state, "cells", None)
    if cells is not None and cells.routed and getattr(request.state, "services", None) is None:
        return await run_in_threadpool(get_services, request)
    return get_services(request)


ServicesDep = Annotated[Services, Depends(services_dependency)]


ACTOR_USER_DOC = (
    "The person an ERP key acts for; recorded in `actor` and counted as "
    "the person for separation of duties. Honoured only from keys created with "
    "`fapiao keys create --acts-for-users`; any other key is itself the person"
)
ACTOR_USER_MAX = 100


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_actor_user: Annotated[
        str | None, Header(max_length=ACTOR_USER_MAX, description=ACTOR_USER_DOC)
    ] = None,
) -> Principal:
    secret = None if credentials is None else credentials.credentials
    return await authenticate(request, services, secret, x_actor_user)


async def authenticate(
    request: Request, services: Services, secret: str | None, x_actor_user: str | None
) -> Principal:
    """The caller's principal from its bearer secret, else 401; kept for the log line."""
    if secret is None:
        raise UnauthenticatedError("send an API key: Authorization: Bearer fpl_...")
    # The key cache answers on the event loop; only a lookup in the key table takes a thread.
    answered, principal = services.keys.authenticate_cached(secret)
    if not answered:
        principal = await run_in_threadpool(services.keys.authenticate, secret)
    if principal is None:
        raise UnauthenticatedError("the API key is unknown or revoked")
    cells: Cells | None = getattr(request.app.state, "cells", None)
    if cells is not None and cells.for_tenant(principal.tenant_id) is not services:
        # A key left in a database its tenant has moved out of: it must not write there.
        raise UnauthenticatedError("this key's tenant is served from another database")
    if x_actor_user and principal.acts_for_users:
        principal = replace(principal, user=actor_user(x_actor_user))
    request.state.principal = principal  # for the request's log line (tenant, key id)
    return principal


async def caller(request: Request) -> tuple[Services, Principal]:
    """`ServicesDep` and `PrincipalDep` in one call, reading the headers as they do (the same
    answers, the same 401 and 422), for a hot route that skips dependency resolution; such a
    route documents the two headers with `CALLER_OPENAPI`."""
    services = await services_dependency(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    secret = token if scheme.lower() == "bearer" and token else None
    x_actor_user = request.headers.get("x-actor-user")
    if x_actor_user is not None and len(x_actor_user) > ACTOR_USER_MAX:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("header", "x-actor-user"),
                    "msg": f"String should have at most {ACTOR_USER_MAX} characters",
                    "input": x_actor_user,
                    "ctx": {"max_length": ACTOR_USER_MAX},
                }
            ]
        )
    return services, await authenticate(request, services, secret, x_actor_user)


CALLER_OPENAPI: dict[str, Any] = {
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {
            "name": "x-actor-user",
            "in": "header",
            "required": False,
            "schema": {
                "anyOf": [{"type": "string", "maxLength": ACTOR_USER_MAX}, {"type": "null"}],
                "description": ACTOR_USER_DOC,
                "title": "X-Actor-User",
            },
            "description": ACTOR_USER_DOC,
        }
    ],
}


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def actor_user(header: str) -> str:
    """The person an ERP key names in X-Actor-User. HTTP gives header bytes as Latin-1; a
    name sent as UTF-8 bytes (张三) is read as UTF-8. Refused, not repaired: control
    characters (the edge refuses them first), other unprintable characters, an empty name."""
    try:
        name = header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidFieldError(
            "X-Actor-User", "must be a name in UTF-8 (e.g. 张三)", "actor_user"
        ) from None
    name = name.strip(" ")
    if not name or not name.isprintable():
        raise InvalidFieldError(
            "X-Actor-User", "must name a person in printable characters", "actor_user"
        )
    return name


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


def read_from(
    services: Services,
    request: Request,
    response: Response,
    projection: str,
    position: int | None,
) -> Reads:
    """The readers for a list, history or queue read (the replica when it has `position`), and
    the headers that say which answered and how far behind the replica is."""
    reads = services.reads(projection, position)
    note_read(request, response, reads)
    return reads


def note_read(request: Request, response: Response, reads: Reads | None) -> None:
    """Which database answered, in the response's headers and the request's log line (None:
    the primary, read on the event loop)."""
    source = "primary" if reads is None else reads.source
    response.headers["X-Fapiao-Read-From"] = source
    request.state.read_from = source
    if reads is not None and reads.lag_ms is not None:
        response.headers["X-Fapiao-Replica-Lag-Ms"] = str(reads.lag_ms)
        request.state.replica_lag_ms = reads.lag_ms


async def _fingerprint(request: Request) -> str:
    """Method, path and the canonical body: JSON re-encoded with sorted keys, a form's fields
    with each uploaded file's SHA-256."""
    content_type = request.headers.get("content-type", "")
    payload: object
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        fields: list[tuple[str, str]] = []
        for name, value in (await request.form()).multi_items():
            if isinstance(value, str):
                fields.append((name, value))
                continue
            digest = hashlib.sha256()
            while chunk := await value.read(1 << 20):
                digest.update(chunk)
            await value.seek(0)
            fields.append((name, f"{value.filename}:{digest.hexdigest()}"))
        payload = sorted(fields)
    else:
        raw = await request.body()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = hashlib.sha256(raw).hexdigest()
    canonical = orjson.dumps(
        {"method": request.method, "path": request.url.path, "body": payload},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


async def run_once(
    request: Request, principal: PrincipalDep, idempotency_key: IdempotencyKey = None
) -> None:
    """Every POST and PUT takes an Idempotency-Key: the command the route runs saves its
    receipt in the same transaction as its events (`application.command_keys`), so a retry gets
    the first answer, a concurrent duplicate the first answer or 409 in-progress with
    Retry-After, and the same key with another body 422."""
    found = None
    if idempotency_key is not None:
        found = Idempotency(idempotency_key, await _fingerprint(request))
    # Set in the request's own context (sync routes run in a copy of it); reset per request.
    enter_command_key(principal.tenant_id, found)


Once = Depends(run_once)
