"""The tamper-evident log: signed checkpoints, their public keys, inclusion and consistency
proofs (RFC 9162). Hashes are hex; the checkpoint note is C2SP text."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.http.deps import PrincipalDep, ServicesDep
from api.http.schemas import shown
from application.access import Role
from domain.errors import InvalidFieldError

router = APIRouter(prefix="/v1", tags=["audit"])
READERS = frozenset({Role.AUDITOR, Role.COMPLIANCE, Role.ADMIN})


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str
    signed_at: str
    key_name: str
    note: str


class KeyOut(BaseModel):
    name: str
    key_id: str
    vkey: str
    public_key_pem: str


class InclusionOut(BaseModel):
    position: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]


@router.get(
    "/checkpoints/latest", response_model=CheckpointOut, summary="The latest signed checkpoint"
)
def latest(principal: PrincipalDep, services: ServicesDep) -> CheckpointOut:
    principal.require(READERS)
    row = services.merkle.latest()
    if row is None:
        raise InvalidFieldError("checkpoint", "no checkpoint has been signed yet", "none")
    return CheckpointOut(
        tree_size=row["tree_size"],
        root_hash=row["root_hash"],
        signed_at=shown(row["signed_at"]) or "",
        key_name=row["key_name"],
        note=row["note"],
    )


@router.get(
    "/checkpoints/keys",
    response_model=list[KeyOut],
    summary="Public keys that sign checkpoints (old ones stay after rotation)",
)
def keys(services: ServicesDep) -> list[KeyOut]:
    return [
        KeyOut(name=k.name, key_id=k.key_id, vkey=k.vkey, public_key_pem=k.pem())
        for k in services.merkle.signer.public_keys()
    ]


@router.get(
    "/checkpoints/consistency",
    response_model=ConsistencyOut,
    summary="Proof that the tree of size `first` is a prefix of the tree of `second`",
)
def consistency(
    principal: PrincipalDep,
    services: ServicesDep,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
) -> ConsistencyOut:
    principal.require(READERS)
    if first > second:
        raise InvalidFieldError("first", "must not be larger than second", "order")
    try:
        proof = services.merkle.consistency(first, second)
    except LookupError as e:
        raise InvalidFieldError("second", str(e), "not_sealed") from None
    return ConsistencyOut(first=first, second=second, proof=[p.hex() for p in proof])


@router.get(
    "/ledger/inclusion",
    response_model=InclusionOut,
    summary="Proof that the event at `position` is in the tree of `tree_size`",
)
def inclusion(
    principal: PrincipalDep,
    services: ServicesDep,
    position: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int | None, Query(ge=1, description="Default: latest checkpoint")] = None,
) -> InclusionOut:
    principal.require(READERS)
    if tree_size is None:
        row = services.merkle.latest()
        if row is None:
            raise InvalidFieldError("tree_size", "no checkpoint has been signed yet", "none")
        tree_size = int(row["tree_size"])
    try:
        index, proof = services.merkle.inclusion(position, tree_size)
    except LookupError as e:
        raise InvalidFieldError("position", str(e), "not_sealed") from None
    leaf = services.merkle.leaf(position)
    assert leaf is not None
    return InclusionOut(
        position=position,
        leaf_index=index,
        tree_size=tree_size,
        leaf_hash=leaf["leaf_hash"],
        proof=[p.hex() for p in proof],
    )
