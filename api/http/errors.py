"""One table from error class to HTTP status, and RFC 9457 problem+json bodies (no stack traces)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from eventsourcing.persistence import InterfaceError as LibraryInterfaceError
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from api.http.responses import OrjsonResponse
from application.access import ForbiddenError
from application.evidence.seal_guard import SealBrokenError
from application.monitoring.reconciliation_service import ReconciliationFileError
from application.remedies.case_commands import CaseNotFoundError
from application.service_errors import (
    ApplicationError,
    CommandInProgressError,
    ConcurrencyConflictError,
    IdempotencyKeyReusedError,
    InvoiceAlreadyExistsError,
    InvoiceNotFoundError,
    ProjectionLagError,
    RunNotFoundError,
    SecretShownOnceError,
    UnknownProjectionError,
)
from domain.errors import (
    CorrectionNotAllowedError,
    DomainError,
    InvalidFieldError,
    InvalidTransitionError,
    SeparationOfDutiesError,
    ValidationFailedError,
)
from infrastructure.evidence.bundle import EmptyLedgerError
from infrastructure.monitoring.webhooks import WebhookError
from infrastructure.store.db_outage import is_outage, outage_types

log = logging.getLogger("fapiao.api")


class UnauthenticatedError(Exception):
    """No API key, or one that is unknown or revoked."""


# Most specific first: the first matching base class decides the status.
STATUS_BY_ERROR: list[tuple[type[Exception], int, str]] = [
    (UnauthenticatedError, 401, "unauthenticated"),
    (ForbiddenError, 403, "forbidden"),
    (SeparationOfDutiesError, 403, "separation-of-duties"),
    (CaseNotFoundError, 404, "not-found"),
    (InvoiceNotFoundError, 404, "not-found"),
    (UnknownProjectionError, 404, "not-found"),
    (RunNotFoundError, 404, "not-found"),
    (InvoiceAlreadyExistsError, 409, "already-exists"),
    (CommandInProgressError, 409, "in-progress"),
    (SecretShownOnceError, 409, "secret-shown-once"),
    (ConcurrencyConflictError, 409, "concurrency-conflict"),
    (InvalidTransitionError, 409, "invalid-transition"),
    (SealBrokenError, 409, "seal-broken"),
    (EmptyLedgerError, 409, "nothing-sealed"),
    (CorrectionNotAllowedError, 409, "correction-not-allowed"),
    (IdempotencyKeyReusedError, 422, "idempotency-key-reused"),
    (ValidationFailedError, 422, "validation-failed"),
    (InvalidFieldError, 422, "validation-failed"),
    (ProjectionLagError, 503, "projection-lagging"),
    (ReconciliationFileError, 422, "unreadable-export"),
    (WebhookError, 422, "webhook"),
    (DomainError, 409, "business-rule"),
    (ApplicationError, 400, "bad-request"),
]

PROBLEM = "application/problem+json"


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> OrjsonResponse:
    body = {
        "type": f"urn:fapiao:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return OrjsonResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_errors(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, ValidationFailedError):
        return [{"field": e.field, "rule": e.rule, "message": e.message} for e in exc.errors]
    if isinstance(exc, InvalidFieldError):
        return [{"field": exc.field, "rule": exc.rule, "message": exc.message}]
    if isinstance(exc, ReconciliationFileError):
        return [{"field": "file", "rule": "unreadable_export", "message": exc.reason}]
    return []


def to_problem(exc: Exception) -> OrjsonResponse:
    for cls, status, slug in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            errors = _field_errors(exc)
            if errors:
                extra["errors"] = errors
            if isinstance(exc, InvalidTransitionError):
                extra.update(current_status=exc.current, step=exc.step)
            if isinstance(exc, CorrectionNotAllowedError):
                extra["rule"] = exc.rule
            title = slug.replace("-", " ").capitalize()
            answer = problem(status, slug, title, str(exc), **extra)
            if isinstance(exc, CommandInProgressError):
                answer.headers["Retry-After"] = str(exc.retry_after)
            return answer
    if is_outage(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem(
            503,
            "database-unavailable",
            "Database unavailable",
            "the database cannot be reached or cannot take writes right now; retry after the "
            "Retry-After seconds (with the same Idempotency-Key)",
        )
    log_unhandled(exc)
    return problem(500, "internal", "Internal error", "an unexpected error occurred; it was logged")


def log_unhandled(exc: Exception) -> None:
    """Log an unexpected error. A database error is logged by its kind, primary message and
    stack only: its full text carries the statement's parameters or the failing row
    (PostgreSQL's DETAIL), which can hold secrets."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        diag = getattr(orig, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(orig).split("\n", 1)[0]
        stack = "".join(traceback.format_tb(exc.__traceback__))
        log.error(
            "unhandled database error %s: %s (statement, parameters and detail not logged)\n%s",
            type(orig).__name__,
            primary,
            stack,
        )
        return
    log.exception("unhandled error", exc_info=exc)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or str(loc[0] if loc else "body")


def request_invalid(_r: Request, exc: RequestValidationError) -> OrjsonResponse:
    errors = [
        {"field": _loc(tuple(e["loc"])), "rule": e["type"], "message": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "validation-failed", "Validation failed", detail, errors=errors)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_invalid)  # type: ignore[arg-type]

    @app.exception_handler(HTTPException)
    def _http(_r: Request, exc: HTTPException) -> OrjsonResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, slug.replace("-", " ").capitalize(), str(exc.detail))

    def _mapped(_r: Request, exc: Exception) -> OrjsonResponse:
        return to_problem(exc)

    # Registered per base class so Starlette's ExceptionMiddleware answers them as 4xx;
    # only what is left reaches the catch-all and becomes a logged 500.
    for base in (
        DomainError,
        ApplicationError,
        UnauthenticatedError,
        WebhookError,
        OperationalError,
        InterfaceError,
        LibraryOperationalError,
        LibraryInterfaceError,
        Exception,
    ):
        app.add_exception_handler(base, _mapped)
    for outage in outage_types():  # 503s, answered before the catch-all (not re-raised)
        app.add_exception_handler(outage, _mapped)
