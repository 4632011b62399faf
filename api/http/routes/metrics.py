"""`/metrics`: the process's Prometheus metrics in the text exposition format. Open by default
(like `/healthz`); `FAPIAO_METRICS_TOKEN` asks for a bearer token, `FAPIAO_METRICS_ADDRESS`
moves them to a listener of their own (then this route answers 404)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from api.http.deps import ServicesDep
from api.http.errors import UnauthenticatedError

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    if not settings.metrics_enabled or settings.metrics_address:
        raise HTTPException(404, "metrics are not served here")
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}"
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise UnauthenticatedError("metrics need Authorization: Bearer <FAPIAO_METRICS_TOKEN>")
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
