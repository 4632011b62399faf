"""Limits at the edge, before any route runs (the API's and the console's alike).

- Body size per route, decided before the body is read: a declared Content-Length over the
  limit is answered 413 at once; a body sent without one is counted as it arrives and cut off
  at the limit (Starlette's body limiter, whose 413 FastAPI raises as an HTTP error). JSON and
  form posts get `FAPIAO_MAX_JSON_BODY_KB`; multipart uploads get their route's own limit
  (reconciliation exports `FAPIAO_RECONCILIATION_UPLOAD_LIMIT_MB`, attachments
  `FAPIAO_ATTACHMENT_LIMIT_MB`, evidence bundles the export limit).
- Query parameters and the path: no control characters, each value within
  `FAPIAO_MAX_QUERY_VALUE_LENGTH`.
- JSON and form bodies (already bounded in size): every string and key without control characters
  (tab, newline and carriage return allowed) and within `domain.bounds.TEXT_LENGTH`; fields
  have tighter limits of their own in the request models and the domain.

Every refusal is problem+json naming the field and the rule, as the routes' own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import problem
from domain.bounds import (
    FIRST_DAY,
    LAST_DAY,
    SURROGATE_MESSAGE,
    TEXT_LENGTH,
    control_character,
    lone_surrogate,
)
from infrastructure.settings import Settings

_RECONCILIATION = re.compile(r"^/(v1|console)/reconciliations/?$")
_BUNDLE = re.compile(r"^/console/evidence/verify/?$")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Headers whose values are kept (in receipts, in the actor): refused, not repaired.
_CHECKED_HEADERS = {b"idempotency-key": "Idempotency-Key", b"x-actor-user": "X-Actor-User"}


def _field_problem(status: int, field: str, rule: str, message: str) -> Any:
    slug, title = (
        ("content-too-large", "Content too large")
        if status == 413
        else ("validation-failed", "Validation failed")
    )
    return problem(
        status,
        slug,
        title,
        f"{field}: {message}",
        errors=[{"field": field, "rule": rule, "message": message}],
    )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, string) for every string and key in a parsed JSON document."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for k, v in item.items():
                child = f"{where}.{k}" if where else str(k)
                yield child, str(k)
                stack.append((child, v))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


_ISO_DATE = re.compile(
    r"^[+-]?(\d{4,})-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def check_text_value(field: str, value: str, max_length: int) -> tuple[str, str] | None:
    """(rule, message) if `value` may not be taken, else None. A value written as an ISO date
    or time must fall in the years the ledger keeps (domain.bounds: 2000-2100)."""
    if len(value) > max_length:
        return "max_length", f"is longer than {max_length} characters"
    bad = control_character(value)
    if bad is not None:
        return "control_characters", f"must not contain control characters (found U+{ord(bad):04X})"
    surrogate = lone_surrogate(value)
    if surrogate is not None:
        return "encoding", SURROGATE_MESSAGE.format(ord(surrogate))
    iso = _ISO_DATE.match(value)
    if iso is not None and not FIRST_DAY.year <= int(iso.group(1)) <= LAST_DAY.year:
        return "date_range", f"must be between {FIRST_DAY} and {LAST_DAY}"
    return None


class EdgeLimits:
    """ASGI middleware: the limits above, before the app sees the request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.json_limit = settings.max_json_body_kb * 1024
        self.upload_limit = settings.attachment_limit_mb * 1024 * 1024 + 64 * 1024
        self.reconciliation_limit = settings.reconciliation_upload_limit_mb * 1024 * 1024
        self.query_length = settings.max_query_value_length
        self._limited: dict[int, ASGIApp] = {}

    def limit_for(self, path: str, content_type: str) -> int:
        if not content_type.startswith("multipart/"):
            return self.json_limit
        if _RECONCILIATION.match(path) or _BUNDLE.match(path):
            return self.reconciliation_limit
        return self.upload_limit

    def _app_limited(self, limit: int) -> ASGIApp:
        if limit not in self._limited:
            self._limited[limit] = RequestBodyLimitMiddleware(self.app, max_body_size=limit)
        return self._limited[limit]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._check_target(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").lower()
        limit = self.limit_for(scope["path"], content_type)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # Refused before a byte of the body is read.
            response = _field_problem(
                413, "body", "max_size", f"is larger than {limit} bytes for this route"
            )
            await response(scope, receive, send)
            return
        if (
            scope["method"] not in _BODY_METHODS
            and (declared is None or declared == "0")
            and "transfer-encoding" not in headers
            and scope.get("http_version") in ("1.0", "1.1")
        ):
            # HTTP/1.x without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3):
            # nothing to bound, so no limiter wrapped around the app (most GETs).
            await self.app(scope, receive, send)
            return
        is_json = content_type.startswith("application/json")
        is_form = content_type.startswith("application/x-www-form-urlencoded")
        if scope["method"] in _BODY_METHODS and (is_json or is_form):
            body = await self._read(receive, limit)
            if body is None:
                response = _field_problem(
                    413, "body", "max_size", f"is larger than {limit} bytes for this route"
                )
                await response(scope, receive, send)
                return
            refused = self._check_json(body) if is_json else self._check_form(body)
            if refused is not None:
                await refused(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        await self._app_limited(limit)(scope, receive, send)

    def _check_target(self, scope: Scope) -> Any:
        for name, value in scope.get("headers", ()):
            if name in _CHECKED_HEADERS and any(b < 0x20 or b == 0x7F for b in value):
                header = _CHECKED_HEADERS[name]
                return _field_problem(
                    422, header, "control_characters", "must not contain control characters"
                )
        path = scope.get("path", "")
        if control_character(path, multiline=False) is not None:
            return _field_problem(
                422, "path", "control_characters", "must not contain control characters"
            )
        raw = scope.get("query_string", b"").decode("latin-1")
        try:
            pairs = parse_qsl(raw, keep_blank_values=True, errors="strict", max_num_fields=200)
        except (ValueError, UnicodeDecodeError):
            return _field_problem(422, "query", "encoding", "is not a valid UTF-8 query string")
        for name, value in pairs:
            for text, what in ((name, "name"), (value, "value")):
                found = check_text_value(name, text, self.query_length)
                if found is not None:
                    rule, message = found
                    field = name if what == "value" else "query"
                    return _field_problem(422, field[:100], rule, message)
        return None

    def _check_form(self, body: bytes) -> Any:
        """A form post (the console's): every field as a JSON string would be checked."""
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=1000
            )
        except UnicodeDecodeError:
            return _field_problem(422, "body", "encoding", "is not valid UTF-8")
        except ValueError:
            return None  # the route's own parser answers
        for name, value in pairs:
            found = check_text_value(name, value, TEXT_LENGTH) or check_text_value(name, name, 200)
            if found is not None:
                rule, message = found
                return _field_problem(422, name[:100] or "body", rule, message)
        return None

    def _check_json(self, body: bytes) -> Any:
        if not body:
            return None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:  # what the route's parser (the stdlib's) would take: lone surrogates
                document = json.loads(body)
            except (ValueError, RecursionError):
                return None  # the route's own parser answers with the position of the error
        for field, text in _strings(document, ""):
            found = check_text_value(field, text, TEXT_LENGTH)
            if found is not None:
                rule, message = found
                return _field_problem(422, field or "body", rule, message)
        return None

    @staticmethod
    async def _read(receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
