"""One place where every HTTP request is seen: its request id (taken from `X-Request-ID` when
the caller sends a sane one, else made here, and returned in the same header), one structured
log line (route template, status, duration, tenant and key id, never the key) and the request
metrics. A pure ASGI middleware, so streamed responses are timed to their last byte.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.structured_logs import bind_request, clear_request

log = logging.getLogger("fapiao.http")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
QUIET = frozenset({"/healthz", "/metrics"})  # scraped every few seconds: DEBUG, not INFO
# A made request id: 16 random hex digits per process, then its request count (32 in all, as
# a uuid4's hex was). Unique across processes and restarts without a urandom call a request:
# that call gives up the GIL on the event loop, and taking it back under load costs
# milliseconds (the profile of benchmarks/read_bench.py).
_PROCESS = os.urandom(8).hex()
_COUNT = itertools.count(1)


def _new_process() -> None:
    global _PROCESS, _COUNT
    _PROCESS, _COUNT = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_process)  # a forked server worker: its own prefix


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return f"{_PROCESS}{next(_COUNT):016x}"


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        clear_request()
        bind_request(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            clear_request()

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        fields = {
            "method": scope["method"],
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "tenant_id": getattr(principal, "tenant_id", None),
            "key_id": getattr(principal, "key_id", None),
        }
        for name in ("read_from", "replica_lag_ms"):
            if name in state:
                fields[name] = state[name]
        level = logging.DEBUG if route in QUIET and status < 400 else logging.INFO
        log.log(level, "request", extra={k: v for k, v in fields.items() if v is not None})
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        metrics = getattr(services, "metrics", None)
        if metrics is not None:
            metrics.observe_request(route, scope["method"], status, seconds)
