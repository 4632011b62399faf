"""What every console page and form shares: the signed-in viewer as a dependency, the CSRF
check on every POST, provenance stamped `console`, and one way to run a form's command:
do it, then go back with the outcome in words (a refusal says why, in the viewer's language)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from api.web.render import redirect_with
from api.web.session import Viewer, check_csrf, session_tenant, viewer
from application.dto import Idempotency
from application.remedies.case_commands import CaseNotFoundError
from application.service_errors import ApplicationError, InvoiceNotFoundError, RunNotFoundError
from domain.base import Provenance, Source
from domain.errors import DomainError
from infrastructure.bootstrap import Cells, Services

NOT_FOUND = (InvoiceNotFoundError, CaseNotFoundError, RunNotFoundError)


def console_services(request: Request) -> Services:
    """The services of the signed-in tenant's database: with tenants routed to several (cells),
    the cell of the tenant the session names; else the one database."""
    chosen: Services | None = getattr(request.state, "services", None)
    if chosen is not None:
        return chosen
    chosen = request.app.state.services
    cells: Cells | None = getattr(request.app.state, "cells", None)
    if cells is not None and cells.routed:
        tenant = session_tenant(request, chosen)
        if tenant is not None:
            chosen = cells.for_tenant(tenant)
    request.state.services = chosen
    return chosen


ServicesDep = Annotated[Services, Depends(console_services)]


def get_viewer(request: Request, services: ServicesDep) -> Viewer:
    return viewer(request, services)


async def posted(request: Request, services: ServicesDep) -> Viewer:
    """The viewer of a form POST, whose CSRF token must be this session's."""
    v = viewer(request, services)
    form = await request.form()
    request.state.form = form  # for the (synchronous) route
    sent = form.get("csrf")
    check_csrf(v, sent if isinstance(sent, str) else None)
    return v


ViewerDep = Annotated[Viewer, Depends(get_viewer)]
PostedDep = Annotated[Viewer, Depends(posted)]


def by(v: Viewer, services: Services, occurred_at: datetime | None = None) -> Provenance:
    """Who did it (the viewer's key and person), through the console, and when (now)."""
    return Provenance(v.principal.actor, Source.CONSOLE, occurred_at or services.ledger.clock.now())


def new_form_key() -> str:
    """A hidden Idempotency-Key per rendered form: sending it twice records it once."""
    return secrets.token_urlsafe(16)


def form_idempotency(key: str | None, *parts: object) -> Idempotency | None:
    if not key:
        return None
    return Idempotency(f"console:{key}", "|".join(str(p) for p in parts))


def act(
    services: Services,
    v: Viewer,
    back: str,
    do: Callable[[], str | None],
    done: str,
) -> RedirectResponse:
    """Run a form's command; on success go to the page it names (or back), on a refusal go back
    and say why. Another tenant's record stays a 404, as in the API."""
    try:
        target = do()
    except NOT_FOUND:
        raise
    except (DomainError, ApplicationError) as e:
        title, lines = v.t.error(e)
        return redirect_with(services, back, "error", title, lines)
    return redirect_with(services, target or back, "ok", done)
