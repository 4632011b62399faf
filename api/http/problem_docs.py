"""The OpenAPI document names every status a route can answer with, and says errors come as
RFC 9457 `application/problem+json` (checked by the schemathesis run in tests/security)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:fapiao:problem:validation-failed"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each field that broke a rule (422, 413)",
            "items": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

# What any operation may answer (authentication, roles, the tenant's objects, the edge's
# limits, a projection behind in a deliberate outage); what needs no key answers fewer.
COMMON = {
    "400": "The body could not be read",
    "401": "No or bad API key",
    "403": "The key's roles may not do this, or separation of duties",
    "404": "No such object for this tenant",
    "405": "Method not allowed",
    "409": "Not allowed in the current state",
    "413": "Body larger than this route takes",
    "422": "Invalid input; `errors` names each field and rule",
    "503": "A projection is behind (Retry-After), or the store is unavailable",
}
UNAUTHENTICATED_PATHS = {"/healthz", "/readyz", "/metrics", "/v1/checkpoints/keys"}


def install(app: FastAPI) -> None:
    """Wrap `app.openapi` so every operation documents the common problem responses."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = original()
        spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, item in spec.get("paths", {}).items():
            for method, operation in item.items():
                if method not in {"get", "put", "post", "delete", "patch"}:
                    continue
                responses = operation.setdefault("responses", {})
                for code, description in COMMON.items():
                    existing = responses.get(code, {})
                    responses[code] = {
                        "description": existing.get("description") or description,
                        "content": problem,
                    }
                if path in UNAUTHENTICATED_PATHS:
                    for code in ("401", "403", "409"):
                        responses.pop(code, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
