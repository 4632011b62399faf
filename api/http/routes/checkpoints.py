"""The tamper-evident log: signed checkpoints (latest, or by size), their public keys,
inclusion and consistency proofs (RFC 9162), and the positions that are the caller's tenant's.
Hashes are hex; the checkpoint note is C2SP text (roots there are base64).

Checkpoints and consistency proofs cover the whole log and say nothing about any tenant's
data; inclusion proofs and the list of positions answer only for the caller's own tenant
(another tenant's position is a 404, like one never sealed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.http.deps import PrincipalDep, ServicesDep
from api.http.schemas import shown
from application.access import Role
from domain.errors import InvalidFieldError

router = APIRouter(prefix="/v1", tags=["audit"])
READERS = frozenset({Role.AUDITOR, Role.COMPLIANCE, Role.ADMIN})


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str
    heads_count: int
    heads_root: str
    signed_at: str
    key_name: str
    note: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CheckpointOut:
        return cls(
            tree_size=row["tree_size"],
            root_hash=row["root_hash"],
            heads_count=row["heads_count"],
            heads_root=row["heads_root"],
            signed_at=shown(row["signed_at"]) or "",
            key_name=row["key_name"],
            note=row["note"],
        )


class KeyOut(BaseModel):
    name: str
    key_id: str
    vkey: str
    public_key_pem: str
    rotation: str | None = None  # signed by the key before this one: "this key follows me"


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


class LeafOut(BaseModel):
    position: int
    leaf_index: int
    stream_id: str
    stream_version: int
    leaf_hash: str


@router.get(
    "/checkpoints/latest", response_model=CheckpointOut, summary="The latest signed checkpoint"
)
def latest(principal: PrincipalDep, services: ServicesDep) -> CheckpointOut:
    principal.require(READERS)
    row = services.merkle.latest()
    if row is None:
        raise InvalidFieldError("checkpoint", "no checkpoint has been signed yet", "none")
    return CheckpointOut.from_row(row)


@router.get(
    "/checkpoints/keys",
    response_model=list[KeyOut],
    summary="Public keys that sign checkpoints (old ones stay after rotation), each newer one "
    "with the rotation statement its predecessor signed",
)
def keys(services: ServicesDep) -> list[KeyOut]:
    return [
        KeyOut(
            name=k.name, key_id=k.key_id, vkey=k.vkey, public_key_pem=k.pem(), rotation=k.rotation
        )
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
    first: Annotated[int, Query(ge=1, le=2**53)],
    second: Annotated[int, Query(ge=1, le=2**53)],
) -> ConsistencyOut:
    principal.require(READERS)
    if first > second:
        raise InvalidFieldError("first", "must not be larger than second", "order")
    try:
        proof = services.merkle.consistency(first, second)
    except LookupError as e:
        raise InvalidFieldError("second", str(e), "not_sealed") from None
    return ConsistencyOut(first=first, second=second, proof=[p.hex() for p in proof])


class TimestampOut(BaseModel):
    tsa_url: str
    token: str  # base64 of the TSA's TimeStampResp (DER)
    gen_time: str


class CosignatureOut(BaseModel):
    witness: str
    cosigned_at: str


class AnchoredCheckpointOut(BaseModel):
    origin: str
    tree_size: int
    root_hash: str  # base64, as in the note
    signed_at: str
    note: str  # the signed note with the witnesses' cosignature lines
    timestamps: list[TimestampOut]
    cosignatures: list[CosignatureOut]


@router.get(
    "/checkpoints",
    response_model=list[AnchoredCheckpointOut],
    summary="Checkpoints signed after tree size `since`, oldest first, with their anchors "
    "(cosignatures in the note, RFC 3161 tokens): keep them to hold the log to its history",
)
def since(
    principal: PrincipalDep,
    services: ServicesDep,
    since: Annotated[int, Query(ge=0, le=2**53, description="A tree size you hold")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AnchoredCheckpointOut]:
    principal.require(READERS)
    return [AnchoredCheckpointOut(**c) for c in services.anchors.since(since, limit)]


@router.get(
    "/checkpoints/{size}",
    response_model=CheckpointOut,
    summary="The checkpoint signed at this tree size (every one is kept)",
)
def by_size(
    size: Annotated[int, Path(ge=1, le=2**53)], principal: PrincipalDep, services: ServicesDep
) -> CheckpointOut:
    principal.require(READERS)
    row = services.merkle.checkpoint(size)
    if row is None:
        raise HTTPException(404, f"no checkpoint was signed at size {size}")
    return CheckpointOut.from_row(row)


@router.get(
    "/ledger/inclusion",
    response_model=InclusionOut,
    summary="Proof that the event at `position` (your tenant's) is in the tree of `tree_size`",
)
def inclusion(
    principal: PrincipalDep,
    services: ServicesDep,
    position: Annotated[int, Query(ge=0, le=2**53)],
    tree_size: Annotated[
        int | None, Query(ge=1, le=2**53, description="Default: latest checkpoint")
    ] = None,
) -> InclusionOut:
    principal.require(READERS)
    leaf = services.merkle.leaf(position)
    if leaf is None or leaf["tenant_id"] != principal.tenant_id:
        raise HTTPException(404, f"position {position} is not a sealed event of your tenant")
    if tree_size is None:
        row = services.merkle.latest()
        if row is None:
            raise InvalidFieldError("tree_size", "no checkpoint has been signed yet", "none")
        tree_size = int(row["tree_size"])
    try:
        index, proof = services.merkle.inclusion(position, tree_size)
    except LookupError as e:
        raise InvalidFieldError("tree_size", str(e), "not_sealed") from None
    return InclusionOut(
        position=position,
        leaf_index=index,
        tree_size=tree_size,
        leaf_hash=leaf["leaf_hash"],
        proof=[p.hex() for p in proof],
    )


@router.get(
    "/ledger/leaves",
    response_model=list[LeafOut],
    summary="Your tenant's sealed positions in log order (ask inclusion proofs for these)",
)
def leaves(
    principal: PrincipalDep,
    services: ServicesDep,
    after_position: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[LeafOut]:
    principal.require(READERS)
    return [
        LeafOut(
            position=r["position"],
            leaf_index=r["leaf_index"],
            stream_id=r["stream_id"],
            stream_version=r["stream_version"],
            leaf_hash=r["leaf_hash"],
        )
        for r in services.merkle.tenant_leaves(principal.tenant_id, after_position, limit)
    ]
