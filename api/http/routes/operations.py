"""Operator actions on the projections: replay the events a projection set aside (dead
letters) once their cause is fixed, while the workers keep running. Admin keys only; the
answer is counts, nothing of any event."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.http.deps import PrincipalDep, ServicesDep
from application.access import ADMINS

router = APIRouter(prefix="/v1/admin/projections", tags=["operations"])


class ReplayOut(BaseModel):
    projection: str
    replayed: int = Field(description="Dead letters applied now and removed")
    still_failing: int = Field(description="Dead letters that failed again (error updated)")
    dead_letters: int = Field(description="Dead letters left")


@router.post(
    "/{name}/dead-letters/replay",
    response_model=ReplayOut,
    summary="Apply a projection's dead letters again (the workers keep running)",
)
def replay_dead_letters(name: str, principal: PrincipalDep, services: ServicesDep) -> ReplayOut:
    principal.require(ADMINS)
    worker = services.worker(name[:100])  # an unknown name is a 404 naming the known ones
    replayed, failing = worker.replay_dead_letters()
    return ReplayOut(
        projection=worker.projection.name,
        replayed=replayed,
        still_failing=failing,
        dead_letters=worker.dead_letter_count(),
    )
