"""The HTTP face of `fapiao witness serve` (c2sp.org/tlog-witness): POST /add-checkpoint, and
GET /latest (the latest checkpoint this witness cosigned, for monitors)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from infrastructure.evidence.witness import MAX_REQUEST_BYTES, WitnessService


def create_witness_app(witness: WitnessService) -> FastAPI:
    app = FastAPI(title="fapiao witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> PlainTextResponse:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        answer = witness.add_checkpoint(body)
        return PlainTextResponse(
            answer.body, status_code=answer.status, media_type=answer.content_type
        )

    @app.get("/latest")
    def latest() -> PlainTextResponse:
        held = witness.latest()
        if held is None:
            return PlainTextResponse("nothing cosigned yet\n", status_code=404)
        return PlainTextResponse(held[1])

    return app
