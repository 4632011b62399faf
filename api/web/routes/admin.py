"""管理: the tenant's policy (acknowledgement window, review days, maintenance windows),
webhooks and their dead letters with redelivery, and API keys (admins: a new key is shown
once, keys are revoked). Clerks may change the policy and webhooks, as in the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.web.forms import PostedDep, ServicesDep, ViewerDep, act, by
from api.web.render import page, redirect_with
from api.web.routes.invoices import beijing_time
from api.web.session import Viewer
from application.access import ADMINS, POLICY_WRITERS, Role
from application.monitoring.alert_rules import EVENT_TYPES
from domain.errors import InvalidFieldError
from infrastructure.api_keys import ApiKeyError
from infrastructure.bootstrap import Services
from infrastructure.monitoring.webhooks import WebhookError

router = APIRouter()


@router.get("/admin/policy", response_class=HTMLResponse)
def policy(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    view = services.policies.get_policy(v.principal.tenant_id)
    return page(request, services, v, "admin_policy.html", policy=view, tab="policy")


@router.post("/admin/policy/{what}")
def change_policy(
    services: ServicesDep,
    v: PostedDep,
    what: str,
    value: Annotated[str, Form(max_length=40)] = "",
    starts_at: Annotated[str, Form(max_length=40)] = "",
    ends_at: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
    window_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    tenant = v.principal.tenant_id

    def do() -> None:
        v.principal.require(POLICY_WRITERS)
        b = by(v, services)
        if what == "ack-window":
            hours = _number("hours", value)
            if not 0 < hours <= 24 * 30:
                raise InvalidFieldError("hours", "between 0 and 720 hours", "range")
            services.policies.set_ack_window(tenant, timedelta(hours=hours), b)
        elif what == "review-days":
            services.policies.set_review_days(tenant, int(_number("days", value)), b)
        elif what == "maintenance":
            start, end = beijing_time("starts_at", starts_at), beijing_time("ends_at", ends_at)
            if start is None or end is None:
                raise InvalidFieldError("starts_at", "give both ends", "pair")
            services.policies.declare_maintenance(tenant, start, end, note, b)
        elif what == "withdraw":
            services.policies.withdraw_maintenance(tenant, _uuid("window_id", window_id), b)
        else:
            raise InvalidFieldError("policy", f"nothing called {what!r}", "enum")

    return act(services, v, "/console/admin/policy", do, v.t("ui.done"))


def _number(field: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a number", "format") from None


def _uuid(field: str, text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not an id", "uuid") from None


def _webhooks_page(
    request: Request, services: Services, v: Viewer, secret: tuple[UUID, str] | None
) -> HTMLResponse:
    tenant = v.principal.tenant_id
    return page(
        request,
        services,
        v,
        "admin_webhooks.html",
        tab="webhooks",
        subscriptions=services.webhooks.subscriptions(tenant),
        dead=services.webhooks.deliveries(tenant, "dead", 100),
        recent=services.webhooks.deliveries(tenant, None, 20),
        event_types=EVENT_TYPES,
        secret=secret,
    )


@router.get("/admin/webhooks", response_class=HTMLResponse)
def webhooks(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    return _webhooks_page(request, services, v, None)


@router.post("/admin/webhooks/{what}", response_model=None)
def change_webhooks(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    what: str,
    url: Annotated[str, Form(max_length=2000)] = "",
    subscription_id: Annotated[str, Form(max_length=40)] = "",
    delivery_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    tenant = v.principal.tenant_id
    if what == "subscribe":  # the secret is shown once, on the page that answers
        v.principal.require(POLICY_WRITERS)
        events = [e for e in request.state.form.getlist("events") if e in EVENT_TYPES]
        try:
            sid, secret = services.webhooks.subscribe(tenant, url.strip(), events or EVENT_TYPES)
        except WebhookError as e:  # a refused URL is said, not raised
            return redirect_with(
                services, "/console/admin/webhooks", "error", v.t("ui.error"), [str(e)]
            )
        return _webhooks_page(request, services, v, (sid, secret))

    def do() -> None:
        v.principal.require(POLICY_WRITERS)
        if what == "unsubscribe":
            services.webhooks.unsubscribe(tenant, _uuid("subscription_id", subscription_id))
        elif what == "redeliver":
            services.webhooks.redeliver(tenant, _uuid("delivery_id", delivery_id))
        else:
            raise InvalidFieldError("webhooks", f"nothing called {what!r}", "enum")

    return act(services, v, "/console/admin/webhooks", do, v.t("ui.done"))


def _keys_page(
    request: Request, services: Services, v: Viewer, created: tuple[str, str] | None
) -> HTMLResponse:
    return page(
        request,
        services,
        v,
        "admin_keys.html",
        tab="keys",
        keys=services.keys.list_keys(v.principal.tenant_id),
        roles=[r.value for r in Role],
        created=created,
    )


@router.get("/admin/keys", response_class=HTMLResponse)
def keys(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    v.principal.require(ADMINS)
    return _keys_page(request, services, v, None)


@router.post("/admin/keys/{what}", response_model=None)
def change_keys(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    what: str,
    label: Annotated[str, Form(max_length=200)] = "",
    key_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    v.principal.require(ADMINS)
    tenant = v.principal.tenant_id
    if what == "create":
        chosen = frozenset(Role(r) for r in request.state.form.getlist("roles") if r in Role)
        if not chosen:
            title, lines = v.t.error(InvalidFieldError("roles", "choose a role", "required"))
            return redirect_with(services, "/console/admin/keys", "error", title, lines)
        new_id, secret = services.keys.create_key(tenant, chosen, label.strip())
        return _keys_page(request, services, v, (new_id, secret))

    def do() -> None:
        if what != "revoke":
            raise InvalidFieldError("keys", f"nothing called {what!r}", "enum")
        try:
            services.keys.revoke(key_id, tenant)
        except ApiKeyError as e:
            raise InvalidFieldError("key_id", str(e), "not_found") from None

    return act(services, v, "/console/admin/keys", do, v.t("ui.done"))
