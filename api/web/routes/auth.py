"""Sign-in (an API key for a session; the person's name when an ERP key is shared), sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.web.forms import PostedDep, ServicesDep
from api.web.i18n import Translator
from api.web.render import page, redirect_with
from api.web.session import (
    check_sign_in_token,
    end_session,
    keep_sign_in_token,
    lang_of,
    sign_in_token,
    start_session,
)
from application.access import Principal

router = APIRouter()
NAME_LIMIT = 64


def _safe_next(target: str | None) -> str:
    """Only back into the console: never an open redirect."""
    if target and target.startswith("/console") and "//" not in target and "\\" not in target:
        return target
    return "/console"


def _form(
    request: Request, services: ServicesDep, status: int = 200, error: str | None = None
) -> HTMLResponse:
    token, cookie = sign_in_token(request, services)
    response = page(
        request,
        services,
        None,
        "sign_in.html",
        status_code=status,
        csrf=token,
        error=error,
        next=_safe_next(request.query_params.get("next")),
        expired=request.query_params.get("expired") == "1",
    )
    keep_sign_in_token(request, response, cookie)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, services: ServicesDep) -> HTMLResponse:
    return _form(request, services)


@router.post("/sign-in")
def sign_in(
    request: Request,
    services: ServicesDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)],
    person: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console",
) -> Response:
    check_sign_in_token(request, services, csrf)
    t = Translator(lang_of(request))
    cells = getattr(request.app.state, "cells", None)
    if cells is not None and cells.routed:  # the database that holds the key's tenant
        services = cells.for_key(api_key.strip())
    principal = services.keys.authenticate(api_key.strip())
    if principal is None:
        return _form(request, services, 401, t("ui.bad_key"))
    name = " ".join(person.split())
    if principal.acts_for_users:
        if not name or len(name) > NAME_LIMIT or not name.isprintable():
            return _form(request, services, 422, t("ui.name_required"))
        principal = Principal(principal.tenant_id, principal.key_id, principal.roles, name, True)
    response = RedirectResponse(_safe_next(next), status_code=303)
    start_session(request, response, services, principal)
    return response


@router.post("/sign-out")
def sign_out(request: Request, services: ServicesDep, v: PostedDep) -> RedirectResponse:
    response = redirect_with(services, "/console/sign-in", "ok", v.t("ui.signed_out"))
    end_session(response)
    return response
