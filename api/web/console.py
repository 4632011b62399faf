"""The web console at /console, served by the API's own process: its pages, its static files
(vendored; nothing is fetched from outside the machine), sign-in, and HTML answers for its
errors (sign-in redirects, CSRF refusals, another tenant's record as 404).

The pages call the same application services as the API, with the same role sets
(application/access.py) and the services' own tenant checks.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.http.errors import problem, request_invalid, to_problem
from api.web.forms import NOT_FOUND
from api.web.i18n import Translator
from api.web.jobs import JobBoard
from api.web.render import page
from api.web.routes import (
    admin,
    auth,
    cases,
    dashboard,
    evidence,
    invoices,
    queues,
    reconciliation,
    reentry,
)
from api.web.session import CsrfRefused, SignInRequired, lang_of
from application.service_errors import ApplicationError
from domain.errors import DomainError

STATIC = Path(__file__).with_name("static")
PREFIX = "/console"


def _console(request: Request) -> bool:
    return request.url.path.startswith(PREFIX)


def install(app: FastAPI) -> None:
    """Mount the console and its assets on `app`; `/`, `/ui` and `/console/` lead to it."""
    app.state.console_jobs = JobBoard()
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    for module in (auth, dashboard, invoices, queues, reentry, cases, reconciliation, evidence):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    app.include_router(admin.router, prefix=PREFIX, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    @app.get(f"{PREFIX}/", include_in_schema=False)
    def to_console() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=307)

    @app.exception_handler(SignInRequired)
    def _sign_in(request: Request, exc: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = PREFIX
        query = f"?next={target}" + ("&expired=1" if exc.expired else "")
        return RedirectResponse(f"{PREFIX}/sign-in{query}", status_code=303)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not _console(request):
            return request_invalid(request, exc)
        lines = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return _error_page(request, 422, "ui.error", None, text="; ".join(lines))

    @app.exception_handler(CsrfRefused)
    def _csrf(request: Request, _exc: CsrfRefused) -> HTMLResponse:
        return _error_page(request, 403, "ui.forbidden", "ui.csrf")

    def _mapped(request: Request, exc: Exception) -> Response:
        if not _console(request):
            return to_problem(exc)
        if isinstance(exc, NOT_FOUND):
            ref = getattr(exc, "ref", None) or request.path_params.get("ref", "")
            return _error_page(request, 404, "ui.not_found", "ui.not_found_detail", ref=ref)
        if isinstance(exc, DomainError | ApplicationError):
            title, _ = Translator(lang_of(request)).error(exc)
            return _error_page(request, 409, "ui.error", None, text=title)
        response = to_problem(exc)  # logs it; the person sees no details
        return _error_page(request, response.status_code, "ui.error", None)

    for base in (DomainError, ApplicationError, Exception):
        app.add_exception_handler(base, _mapped)

    @app.exception_handler(404)
    def _not_found(request: Request, exc: Exception) -> Response:
        if not _console(request):
            return problem(404, "not-found", "Not found", str(getattr(exc, "detail", "")))
        return _error_page(
            request, 404, "ui.not_found", "ui.not_found_detail", ref=request.url.path
        )


def _error_page(
    request: Request,
    status: int,
    title: str,
    detail: str | None,
    text: str | None = None,
    **params: object,
) -> HTMLResponse:
    services = request.app.state.services
    t = Translator(lang_of(request))
    return page(
        request,
        services,
        None,
        "error.html",
        status_code=status,
        title=t(title),
        detail=text or (t(detail, **params) if detail else ""),
    )
