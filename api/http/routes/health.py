"""Liveness and readiness: is the process up; can it reach the database; how far behind are
the projections."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.http.deps import ServicesDep
from api.http.responses import OrjsonResponse

router = APIRouter(tags=["health"])
RETRY = {"Retry-After": "5"}


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database reachable; projection lag and dead letters reported; no projection "
    "stalled; the log still signs",
    responses={503: {"description": "Not ready: database, a stalled projection, or the seal"}},
)
def readyz(services: ServicesDep) -> OrjsonResponse:
    body: dict[str, Any] = {"store": "postgresql" if services.settings.is_postgres else "sqlite"}
    try:
        services.check_database()
        body["projections"] = services.projection_status()
        body["dead_letters"] = {
            r["projection"]: services.worker(r["projection"]).dead_letters(limit=5)
            for r in body["projections"]
            if r["dead_letters"]
        }
        seal = services.merkle.health()
        refused = services.check_writes()
        anchors = services.anchors.status()
    except Exception as e:  # noqa: BLE001 - readiness reports, it does not raise
        body.update(status="unavailable", database=f"{type(e).__name__}")
        return OrjsonResponse(body, status_code=503, headers=RETRY)
    body["database"] = "ok"
    if refused:  # reads work but every write would fail (SQLite's disk full, a read-only DB)
        body.update(status="unavailable", writes=refused)
        return OrjsonResponse(body, status_code=503, headers=RETRY)
    body["writes"] = "ok"
    # Anchors are fetched after signing; missing ones are reported, not a reason to stop serving.
    body["anchors"] = {
        "timestamp_tokens_outstanding": anchors.tokens_outstanding,
        "cosignatures_outstanding": anchors.cosignatures_outstanding,
        "witness_quorum": anchors.quorum,
        "errors": anchors.errors,
    }
    if seal.refusing:  # the log cannot prove its next checkpoint: evidence is not safe
        body.update(
            status="unavailable",
            seal={"status": "refusing to sign", "reason": seal.reason, "tree_size": seal.tree_size},
        )
        return OrjsonResponse(body, status_code=503, headers=RETRY)
    stalled = [r["projection"] for r in body["projections"] if r["stalled"]]
    if stalled:  # behind the head and not moving: reads that wait for it would all time out
        body.update(status="unavailable", stalled=stalled, seal={"status": "ok"})
        return OrjsonResponse(body, status_code=503, headers=RETRY)
    body.update(status="ready", seal={"status": "ok"})
    return OrjsonResponse(body)
