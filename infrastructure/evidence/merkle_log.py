"""The Merkle log in SQL: the sealing projection, signed checkpoints, proofs, and verification
of the live ledger against its seal.

Two trees per checkpoint: the log (one leaf per stored event, in log order) and the stream
heads (one leaf per stream, its last event, ordered by where the stream first appears). The
checkpoint's note carries the second root as an extension line. Roots and proofs are computed
from the stored leaves, never from the event table; a checkpoint is signed only once the new
root is proven to extend the previous signed checkpoint (application/evidence/seal_guard.py).
Every table here is append-only (triggers); the seal is never rebuilt.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from application.evidence.leaf_encoding import head_hash, leaf_hash, tenant_of_first_event
from application.evidence.seal_guard import SealBrokenError, prove_extension
from application.ports import StoredEventRow
from application.service_errors import ApplicationError
from domain.evidence import merkle
from domain.evidence.checkpoint import (
    Checkpoint,
    NoteFormatError,
    StreamHeads,
    parse_note,
)
from infrastructure.evidence.checkpoint_signer import CheckpointSigner, verify_note_signature
from infrastructure.store.tables import checkpoints, merkle_frontier, merkle_leaves, seal_incidents

logger = logging.getLogger("fapiao.seal")
happenings = logging.getLogger("fapiao.happenings")


class _SignedMeanwhile(Exception):
    """Another process signed at or past this size while we read: read again."""


class SealRebuildRefusedError(ApplicationError):
    """The seal is append-only: emptying it would let the log sign a different history."""

    def __init__(self) -> None:
        super().__init__(
            "the seal is append-only and is never emptied or rebuilt (a rebuilt log would sign "
            "a fork); `fapiao ledger verify` checks it"
        )


# ---- reading the stored seal ---------------------------------------------------------------


@dataclass
class StreamHead:
    slot: int
    version: int
    position: int
    tenant: str | None


@dataclass
class HeadsTree:
    """Every stream's head, by slot (first appearance); changes are hashed when flushed."""

    streams: dict[str, StreamHead] = field(default_factory=dict)
    tree: merkle.Tree = field(default_factory=merkle.Tree)
    pending: set[str] = field(default_factory=set)

    def see(self, stream_id: str, version: int, position: int, tenant: str | None) -> None:
        head = self.streams.get(stream_id)
        if head is None:
            self.streams[stream_id] = StreamHead(len(self.streams), version, position, tenant)
        else:
            head.version, head.position = version, position
        self.pending.add(stream_id)

    def flush(self) -> StreamHeads:
        """Hash the changed heads into the tree: only theirs (the others' leaves stand), the
        tree's upper levels built again at once when most leaves changed, else path by path."""
        changes = {}
        for sid in self.pending:
            h = self.streams[sid]
            changes[h.slot] = head_hash(sid, h.version, h.position)
        if len(self.pending) * 4 > len(self.streams):
            leaves = self.tree.levels[0] + [b""] * (len(self.streams) - self.tree.size)
            for slot, leaf in changes.items():
                leaves[slot] = leaf  # every new stream's slot is among the changes
            self.tree = merkle.Tree(leaves)
        elif changes:
            self.tree.update(changes)
        self.pending.clear()
        return StreamHeads(len(self.streams), self.tree.root())


@dataclass
class SealState:
    """The sealer's running view: the log's frontier and the heads, at `size` leaves."""

    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    heads: HeadsTree = field(default_factory=HeadsTree)

    @property
    def size(self) -> int:
        return self.frontier.size

    def add(
        self, stream_id: str, version: int, position: int, tenant: str | None, h: bytes
    ) -> None:
        self.frontier.append(h)
        self.heads.see(stream_id, version, position, tenant)


class SealedLog:
    """The sealed leaves read so far (both trees and every stream's head), extended by reading
    only the leaves sealed since: what a process needs to prove and sign at the sealed size.
    Leaves are append-only, so what was read stays true; `ledger verify` rereads everything."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.positions: list[int] = []
        self.tenants: list[str | None] = []
        self.index_of: dict[int, int] = {}  # position -> leaf index
        self.heads = HeadsTree()
        self.tree = merkle.Tree()

    @property
    def size(self) -> int:
        return len(self.hashes)

    def extend(self, conn: Connection, size: int | None = None) -> None:
        """Read the leaves after the ones held (up to `size` leaves in all, if given)."""
        c = merkle_leaves.c
        query = select(
            c.leaf_index, c.position, c.stream_id, c.stream_version, c.tenant_id, c.leaf_hash
        ).where(c.leaf_index >= self.size)
        if size is not None:
            query = query.where(c.leaf_index < size)
        rows = conn.execute(query.order_by(c.leaf_index)).all()
        if rows and (int(rows[0][0]), int(rows[-1][0])) != (self.size, self.size + len(rows) - 1):
            raise SealBrokenError("merkle_leaves: a leaf is missing")
        first = self.size
        new = [bytes.fromhex(r[5]) for r in rows]
        streams = self.heads.streams
        for i, (_, position, stream, version, tenant, _) in enumerate(rows, start=first):
            self.positions.append(int(position))
            self.tenants.append(tenant)
            self.index_of[int(position)] = i
            head = streams.get(stream)
            if head is None:
                streams[stream] = StreamHead(len(streams), int(version), int(position), tenant)
            else:
                head.version, head.position = int(version), int(position)
            self.heads.pending.add(stream)
        self.hashes += new
        if len(new) * 4 > self.size:
            self.tree = merkle.Tree(self.hashes)
        elif new:
            self.tree.update({first + i: h for i, h in enumerate(new)})

    def proofs(
        self, positions: Iterable[int], streams: Iterable[str], known_size: int | None = None
    ) -> SealedProofs:
        heads = self.heads.flush()
        leaves, inclusion = {}, {}
        for position in positions:
            i = self.index_of.get(position)
            if i is not None:
                leaves[position] = (i, self.hashes[i], self.tenants[i])
                inclusion[position] = self.tree.inclusion_proof(i)
        head_proofs = {}
        for sid in streams:
            head = self.heads.streams.get(sid)
            if head is not None:
                copy = StreamHead(head.slot, head.version, head.position, head.tenant)
                head_proofs[sid] = (copy, self.heads.tree.inclusion_proof(head.slot))
        known = None
        if known_size is not None and 0 < known_size <= self.size:
            known = (
                merkle.root(self.hashes[:known_size]),
                merkle.consistency_proof(known_size, self.hashes) if known_size < self.size else [],
            )
        return SealedProofs(
            self.size, self.tree.root(), heads, leaves, inclusion, head_proofs, known
        )


@dataclass(frozen=True)
class SealedProofs:
    """What one export needs from the sealed log at `size`, computed at once."""

    size: int
    root: bytes
    heads: StreamHeads
    leaves: dict[int, tuple[int, bytes, str | None]]  # position -> (leaf index, hash, tenant)
    inclusion: dict[int, list[bytes]]  # position -> audit path in the tree of `size`
    stream_heads: dict[str, tuple[StreamHead, list[bytes]]]  # stream -> (head, audit path)
    known: tuple[bytes, list[bytes]] | None  # (root at the known size, consistency proof)


def _leaf_rows(conn: Connection, size: int | None = None) -> Iterator[Any]:
    """(leaf_index, position, stream_id, stream_version, tenant_id, leaf_hash), in order."""
    query = select(
        merkle_leaves.c.leaf_index,
        merkle_leaves.c.position,
        merkle_leaves.c.stream_id,
        merkle_leaves.c.stream_version,
        merkle_leaves.c.tenant_id,
        merkle_leaves.c.leaf_hash,
    ).order_by(merkle_leaves.c.leaf_index)
    if size is not None:
        query = query.where(merkle_leaves.c.leaf_index < size)
    yield from conn.execute(query).all()


def _leaf_hashes(conn: Connection, start: int, stop: int) -> list[bytes]:
    c = merkle_leaves.c
    query = (
        select(c.leaf_hash).where(c.leaf_index >= start, c.leaf_index < stop).order_by(c.leaf_index)
    )
    return list(map(bytes.fromhex, conn.execute(query).scalars().all()))


def _sealed_size(conn: Connection) -> int:
    top = conn.execute(select(func.max(merkle_leaves.c.leaf_index))).scalar()
    return 0 if top is None else int(top) + 1


def _latest(conn: Connection) -> Any:
    return conn.execute(
        select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()


def _frontier_at(conn: Connection, size: int) -> list[tuple[int, bytes]]:
    c = merkle_frontier.c
    rows = conn.execute(select(c.size, c.hash).where(c.tree_size == size).order_by(c.slot))
    return [(int(n), bytes.fromhex(h)) for n, h in rows]


RESOLVED = "resolved: "


def _open_incident(conn: Connection) -> Any:
    """The latest refusal, unless a checkpoint was signed after it or it was resolved."""
    incident = conn.execute(
        select(seal_incidents).order_by(seal_incidents.c.detected_at.desc()).limit(1)
    ).first()
    if incident is None or incident.reason.startswith(RESOLVED):
        return None
    latest = conn.execute(select(func.max(checkpoints.c.signed_at))).scalar()
    return incident if latest is None or incident.detected_at > latest else None


# ---- proving and signing ---------------------------------------------------------------------


def _stored_checkpoint(row: Any, signer: CheckpointSigner) -> Checkpoint:
    """The stored checkpoint, its note parsed, coherent with its columns and signed by one of
    the log's published keys; else SealBrokenError naming what is wrong."""
    size = int(row.tree_size)
    try:
        checkpoint, sigs = parse_note(row.note)
    except NoteFormatError as e:
        raise SealBrokenError(f"checkpoint {size}: its note does not parse ({e})") from None
    heads = checkpoint.stream_heads()
    if (
        checkpoint.size != size
        or checkpoint.root.hex() != row.root_hash
        or heads is None
        or heads.root.hex() != row.heads_root
        or heads.count != row.heads_count
    ):
        raise SealBrokenError(f"checkpoint {size}: its stored columns differ from its note")
    keys = {k.key_id: k.public_key for k in signer.public_keys()}
    if not any(
        s.key_id.hex() in keys
        and s.key_name == row.key_name
        and verify_note_signature(checkpoint.body(), s, keys[s.key_id.hex()])
        for s in sigs
    ):
        raise SealBrokenError(f"checkpoint {size}: no published key verifies its signature")
    return checkpoint


def _prove_and_sign(
    conn: Connection,
    signer: CheckpointSigner,
    size: int,
    heads: StreamHeads,
    expected_root: bytes | None,
    new_leaves: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """Sign the checkpoint of `size` once it is proven to extend the latest one."""
    latest = _latest(conn)
    previous = None if latest is None else _stored_checkpoint(latest, signer)
    start = 0 if previous is None else previous.size
    if size <= start:
        raise SealBrokenError(f"checkpoint {start} already covers {size} leaves")
    frontier_rows = [] if previous is None else _frontier_at(conn, start)
    if new_leaves is None:
        new_leaves = _leaf_hashes(conn, start, size)
    if len(new_leaves) != size - start:
        raise SealBrokenError(f"leaves {start}..{size - 1} are not all stored")
    frontier = prove_extension(previous, frontier_rows, new_leaves, expected_root)
    return _store_signed(conn, signer, size, heads, frontier)


def _store_signed(
    conn: Connection,
    signer: CheckpointSigner,
    size: int,
    heads: StreamHeads,
    frontier: merkle.Frontier,
) -> dict[str, Any]:
    """Sign the proven tree of `size` and keep the checkpoint with its frontier."""
    text = signer.sign(Checkpoint(signer.origin, size, frontier.root(), (heads.line(),)))
    row = _keep(conn, text, heads, frontier, datetime.now(UTC))
    happenings.info(
        "checkpoint signed",
        extra={"tree_size": size, "root_hash": row["root_hash"], "key_name": row["key_name"]},
    )
    return row


def _keep(
    conn: Connection, note: str, heads: StreamHeads, frontier: merkle.Frontier, signed_at: datetime
) -> dict[str, Any]:
    """Store a signed checkpoint (append-only) with the frontier of its tree."""
    checkpoint, sigs = parse_note(note)
    row = {
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root.hex(),
        "heads_count": heads.count,
        "heads_root": heads.root.hex(),
        "signed_at": signed_at,
        "key_name": sigs[0].key_name,
        "note": note,
    }
    conn.execute(checkpoints.insert(), [row])
    conn.execute(
        merkle_frontier.insert(),
        [
            {"tree_size": checkpoint.size, "slot": i, "size": n, "hash": h.hex()}
            for i, (n, h) in enumerate(frontier.subtrees)
        ],
    )
    return row


def _record_incident(conn: Connection, size: int, reason: str) -> None:
    """Raise the alarm once per distinct reason (the sealer retries every batch)."""
    open_ = _open_incident(conn)
    if open_ is not None and open_.reason == reason:
        logger.error("seal: still refusing to sign checkpoint %s: %s", size, reason)
        return
    logger.critical("seal: refusing to sign checkpoint %s: %s", size, reason)
    conn.execute(
        seal_incidents.insert().values(
            incident_id=uuid.uuid4(), detected_at=datetime.now(UTC), tree_size=size, reason=reason
        )
    )


class SealProjection:
    """Appends every stored event, in log order, as a leaf naming its tenant; signs a
    checkpoint (both roots) every `every` events or `interval`, once it can prove it."""

    name = "seal"
    topics: frozenset[str] = frozenset()
    raw = True  # the worker hands over stored rows (with recorded_at), not decoded events
    isolate_poison = False  # every row becomes a leaf, in order: it never skips one

    def __init__(
        self,
        signer: CheckpointSigner,
        every: int = 1000,
        interval: timedelta = timedelta(minutes=10),
    ) -> None:
        self.signer, self.every, self.interval = signer, every, interval
        self._state: SealState | None = None
        self._broken: str | None = None  # why the stored seal cannot be trusted, from loading

    def handles(self, event: object) -> bool:
        return True

    def _load(self, conn: Connection) -> SealState:
        """Rebuild the running state from the stored leaves (once per process), checking every
        stored checkpoint's note and signature, and the latest one against the leaves."""
        state, latest = SealState(), _latest(conn)
        self._broken = None
        target = None if latest is None else int(latest.tree_size)
        at_target: tuple[list[tuple[int, bytes]], StreamHeads] | None = None
        for r in _leaf_rows(conn):
            if int(r.leaf_index) != state.size:
                self._broken = f"merkle_leaves: leaf {state.size} is missing"
                break
            state.add(
                r.stream_id,
                int(r.stream_version),
                int(r.position),
                r.tenant_id,
                bytes.fromhex(r.leaf_hash),
            )
            if state.size == target:
                at_target = (list(state.frontier.subtrees), state.heads.flush())
        if at_target is not None:
            self._check_latest(conn, latest, *at_target)
        elif target is not None:
            self._broken = self._broken or f"checkpoint {target} covers more leaves than are stored"
        for row in conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size)):
            try:
                _stored_checkpoint(row, self.signer)
            except SealBrokenError as e:
                self._broken = self._broken or e.reason
        self._state = state
        return state

    def _check_latest(
        self,
        conn: Connection,
        latest: Any,
        subtrees: list[tuple[int, bytes]],
        heads: StreamHeads,
    ) -> None:
        size = int(latest.tree_size)
        if merkle.Frontier(subtrees).root().hex() != latest.root_hash:
            self._broken = f"checkpoint {size}: the stored leaves do not give its root"
        elif heads.root.hex() != latest.heads_root or heads.count != latest.heads_count:
            self._broken = f"checkpoint {size}: the stored leaves do not give its stream heads"
        elif _frontier_at(conn, size) != subtrees:
            self._broken = f"merkle_frontier at {size}: differs from the stored leaves' frontier"

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, StoredEventRow]]
    ) -> list[tuple[int, Any, Exception]]:
        if not items:
            return []
        state = self._state
        if state is None or state.size != _sealed_size(conn):
            state = self._load(conn)
        first = state.size
        leaves = []
        for i, (_, row) in enumerate(items):
            sid = str(row.originator_id)
            known = state.heads.streams.get(sid)
            if known is not None:
                tenant = known.tenant
            else:
                tenant = tenant_of_first_event(row) if row.originator_version == 1 else None
            h = leaf_hash(row, tenant)
            state.add(sid, row.originator_version, row.position, tenant, h)
            leaves.append(
                {
                    "leaf_index": first + i,
                    "position": row.position,
                    "stream_id": sid,
                    "stream_version": row.originator_version,
                    "tenant_id": tenant,
                    "leaf_hash": h.hex(),
                }
            )
        conn.execute(merkle_leaves.insert(), leaves)
        latest = _latest(conn)
        signed = int(latest.tree_size) if latest else 0
        stale = latest is None or datetime.now(UTC) - latest.signed_at >= self.interval
        if state.size - signed >= self.every or (stale and state.size > signed):
            try:
                if self._broken:
                    raise SealBrokenError(self._broken)
                _prove_and_sign(
                    conn, self.signer, state.size, state.heads.flush(), state.frontier.root()
                )
            except SealBrokenError as e:
                _record_incident(conn, state.size, e.reason)
        return []

    def reset(self, conn: Connection) -> None:
        raise SealRebuildRefusedError()


# ---- verification ------------------------------------------------------------------------------


@dataclass
class LogVerifyReport:
    leaves: int
    unsealed: int
    checkpoints: int
    checkpoint_size: int | None
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_bad_position(self) -> int | None:
        for f in self.failures:
            if f.startswith("position "):
                return int(f.split()[1].rstrip(":"))
        return None


@dataclass
class SealHealth:
    refusing: bool
    reason: str | None = None
    since: datetime | None = None
    tree_size: int | None = None


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class MerkleLog:
    def __init__(self, engine: Engine, write_engine: Engine, signer: CheckpointSigner) -> None:
        self.engine, self.write_engine, self.signer = engine, write_engine, signer
        self._sealed = SealedLog()  # this process's view, extended as the log grows
        self._lock = threading.Lock()

    # ---- checkpoints ----

    def prove(
        self,
        positions: Iterable[int],
        streams: Iterable[str],
        size: int | None = None,
        known_size: int | None = None,
        recheck: bool = False,
    ) -> tuple[SealedProofs, dict[str, Any]]:
        """Proofs for these events and stream heads at the sealed size (or at `size`, which
        must have a checkpoint), and the signed checkpoint of that size: the stored one,
        checked, or a new one proven from the previous checkpoint. SealBrokenError if the
        log cannot stand behind it. While the log is refusing to sign, only `recheck` (an
        operator's `fapiao ledger checkpoint`) proves again, and resolves the refusal if the
        checks pass."""
        with self._lock:
            if size is None or size == self._sealed.size:
                log, fresh = self._sealed, False
            else:
                log, fresh = SealedLog(), True
            for _ in range(3):
                with self.engine.connect() as conn:
                    log.extend(conn, size)
                if size is not None and log.size != size:
                    raise LookupError(f"the log has no tree of size {size}")
                try:
                    row = self._checkpoint_at(log, must_exist=fresh, recheck=recheck)
                except _SignedMeanwhile:
                    continue  # another signer got there first: read what it signed
                return log.proofs(positions, streams, known_size), row
            raise SealBrokenError("checkpoints kept being signed under this export; try again")

    def _checkpoint_at(self, log: SealedLog, must_exist: bool, recheck: bool) -> dict[str, Any]:
        if log.size == 0:
            raise SealBrokenError("nothing is sealed")
        with self.write_engine.begin() as conn:
            incident = _open_incident(conn)
            if incident is not None and not recheck:
                raise SealBrokenError(incident.reason)
            try:
                row, signed = self._stored_or_signed(conn, log, must_exist)
                if incident is not None and not signed:  # nothing new to sign: check it all
                    if merkle.Frontier(_frontier_at(conn, log.size)).root() != log.tree.root():
                        raise SealBrokenError(
                            f"the stored frontier at checkpoint {log.size} does not give its "
                            "signed root"
                        )
                    conn.execute(
                        seal_incidents.insert().values(
                            incident_id=uuid.uuid4(),
                            detected_at=datetime.now(UTC),
                            tree_size=log.size,
                            reason=f"{RESOLVED}the checks pass again ({incident.reason})",
                        )
                    )
                    logger.warning("seal: the checks pass again; signing resumes")
                return row
            except SealBrokenError as e:
                failed = e
        with self.write_engine.begin() as conn:
            _record_incident(conn, log.size, failed.reason)
        raise failed

    def _stored_or_signed(
        self, conn: Connection, log: SealedLog, must_exist: bool
    ) -> tuple[dict[str, Any], bool]:
        """The checkpoint at the log's size, checked against the leaves, or newly proven and
        signed; (row, whether it was signed now)."""
        row = conn.execute(select(checkpoints).where(checkpoints.c.tree_size == log.size)).first()
        if row is not None:
            checkpoint = _stored_checkpoint(row, self.signer)
            if checkpoint.root != log.tree.root() or checkpoint.stream_heads() != log.heads.flush():
                raise SealBrokenError(f"checkpoint {log.size}: the sealed leaves differ from it")
            return dict(row._mapping), False
        if must_exist:
            raise LookupError(f"no checkpoint was signed at size {log.size}")
        latest = _latest(conn)
        start = 0 if latest is None else int(latest.tree_size)
        if start > log.size:
            raise _SignedMeanwhile()
        try:
            signed = _prove_and_sign(
                conn, self.signer, log.size, log.heads.flush(), log.tree.root(), log.hashes[start:]
            )
        except IntegrityError:  # the same size was signed meanwhile; this one rolls back
            raise _SignedMeanwhile() from None
        return signed, True

    def checkpoint_now(self, recheck: bool = False) -> dict[str, Any] | None:
        """Sign a checkpoint at the sealed size, unless the latest already covers it. With
        `recheck`, an open refusal is proven again (and resolved if the checks pass)."""
        with self.engine.connect() as conn:
            size = _sealed_size(conn)
        if size == 0:
            return None
        return self.prove((), (), None, recheck=recheck)[1]

    def checkpoint_at(self, size: int) -> dict[str, Any]:
        """A checkpoint of exactly the first `size` sealed events (what a backup holds): the
        stored one, checked; one proven and signed now past the latest; or, for a prefix of a
        tree already signed, one signed over the prefix's own root once a consistency proof
        shows the latest checkpoint extends it (a prefix, never a fork)."""
        with self._lock:
            log = SealedLog()
            with self.engine.connect() as conn:
                log.extend(conn, size)
            if log.size != size:
                raise LookupError(f"only {log.size} events are sealed; cannot sign {size}")
            with self.write_engine.begin() as conn:
                incident = _open_incident(conn)
                if incident is not None:
                    raise SealBrokenError(incident.reason)
                latest = _latest(conn)
                stored = conn.execute(
                    select(checkpoints).where(checkpoints.c.tree_size == size)
                ).first()
                if stored is not None or latest is None or int(latest.tree_size) < size:
                    return self._stored_or_signed(conn, log, must_exist=False)[0]
                newest = _stored_checkpoint(latest, self.signer)
                frontier = merkle.Frontier()
                for h in log.hashes:
                    frontier.append(h)
                proof = merkle.consistency_proof_from(
                    frontier.subtrees, _leaf_hashes(conn, size, newest.size)
                )
                if not merkle.verify_consistency(
                    size, newest.size, frontier.root(), newest.root, proof
                ):
                    raise SealBrokenError(
                        f"the sealed leaves up to {size} are not a prefix of checkpoint "
                        f"{newest.size}"
                    )
                return _store_signed(conn, self.signer, size, log.heads.flush(), frontier)

    def adopt(self, note: str, signed_at: datetime) -> bool:
        """Keep a checkpoint this log signed elsewhere (a backup's, signed after its snapshot)
        if it is of exactly these sealed leaves: its root and stream heads are recomputed from
        them, and its frontier is stored with it. False if one of that size is kept already or
        fewer leaves are sealed here; SealBrokenError if the leaves do not give it. The caller
        checks its signature."""
        checkpoint, _ = parse_note(note)
        with self._lock:
            log = SealedLog()
            with self.engine.connect() as conn:
                log.extend(conn, checkpoint.size)
            if log.size < checkpoint.size:
                return False  # not all sealed here yet: the sealer will sign its own
            heads = log.heads.flush()
            if log.tree.root() != checkpoint.root or checkpoint.stream_heads() != heads:
                raise SealBrokenError(
                    f"checkpoint {checkpoint.size}: the sealed leaves do not give it"
                )
            frontier = merkle.Frontier()
            for h in log.hashes:
                frontier.append(h)
            with self.write_engine.begin() as conn:
                c = checkpoints.c
                if conn.execute(select(c.tree_size).where(c.tree_size == log.size)).first():
                    return False
                _keep(conn, note, heads, frontier, signed_at)
        return True

    def sealed_size(self) -> int:
        """How many events are sealed (leaves in the tree)."""
        with self.engine.connect() as conn:
            return _sealed_size(conn)

    def latest(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _latest(conn)
        return None if row is None else dict(row._mapping)

    def checkpoint(self, size: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).where(checkpoints.c.tree_size == size)).first()
        return None if row is None else dict(row._mapping)

    def health(self) -> SealHealth:
        """Refusing to sign (an incident newer than the last checkpoint), or fine."""
        with self.engine.connect() as conn:
            incident = _open_incident(conn)
        if incident is None:
            return SealHealth(False)
        return SealHealth(True, incident.reason, incident.detected_at, int(incident.tree_size))

    # ---- leaves and proofs ----

    def leaf(self, position: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(merkle_leaves).where(merkle_leaves.c.position == position)
            ).first()
        return None if row is None else dict(row._mapping)

    def tenant_leaves(self, tenant_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """The tenant's sealed positions, in log order (what its auditor may ask proofs for)."""
        c = merkle_leaves.c
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    select(merkle_leaves)
                    .where(c.tenant_id == tenant_id, c.position > after)
                    .order_by(c.position)
                    .limit(limit)
                )
            ]

    def inclusion(self, position: int, tree_size: int) -> tuple[int, list[bytes]]:
        """(leaf index, audit path) of the event at `position` in the tree of `tree_size`."""
        leaf = self.leaf(position)
        if leaf is None:
            raise LookupError(f"position {position} is not sealed yet")
        index = int(leaf["leaf_index"])
        if index >= tree_size:
            raise LookupError(f"position {position} is not in a tree of size {tree_size}")
        with self._lock:
            hashes = self._hashes(tree_size)
            if tree_size == self._sealed.size:
                return index, self._sealed.tree.inclusion_proof(index)
        return index, merkle.inclusion_proof(index, hashes)

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self._lock:
            hashes = self._hashes(second)
        return merkle.consistency_proof(first, hashes)

    def consistency_from_checkpoint(self, first: int, second: int) -> list[bytes]:
        """The consistency proof from the checkpoint of size `first` (its stored frontier) to
        the tree of `second`, reading only the leaves in between (what the witness client
        sends; cheaper than `consistency`, which holds the whole tree). LookupError if no
        checkpoint of size `first` is kept or the leaves are not all sealed."""
        with self.engine.connect() as conn:
            frontier = _frontier_at(conn, first)
            leaves = _leaf_hashes(conn, first, second)
        if not frontier or len(leaves) != second - first:
            raise LookupError(f"no checkpoint of size {first}, or leaves up to {second} missing")
        return merkle.consistency_proof_from(frontier, leaves)

    def _hashes(self, size: int) -> list[bytes]:
        """The first `size` leaf hashes (the caller holds the lock)."""
        with self.engine.connect() as conn:
            self._sealed.extend(conn)
        if self._sealed.size < size:
            raise LookupError(f"the log has no tree of size {size} yet")
        return self._sealed.hashes[:size]

    # ---- verification (read-only) ----

    def verify(self, rows: Iterable[StoredEventRow]) -> LogVerifyReport:
        """Recompute every leaf from the stored events and both trees from the leaves; check
        every stored checkpoint (note, signature, roots, frontier) and its consistency with
        the one before. Reads only; names every fault."""
        failures: list[tuple[tuple[int, int], str]] = []

        def fail(kind: int, at: int, text: str) -> None:
            failures.append(((kind, at), text))

        with self.engine.connect() as conn:
            sealed = [
                (int(r.leaf_index), int(r.position), r.stream_id, int(r.stream_version))
                + (r.tenant_id, r.leaf_hash)
                for r in _leaf_rows(conn)
            ]
            stored = list(conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size)))
            frontier_rows: dict[int, list[tuple[int, int, str]]] = {}
            for f in conn.execute(
                select(merkle_frontier).order_by(
                    merkle_frontier.c.tree_size, merkle_frontier.c.slot
                )
            ):
                frontier_rows.setdefault(int(f.tree_size), []).append(
                    (int(f.slot), int(f.size), f.hash)
                )
        by_position = {s[1]: s for s in sealed}
        head = max(by_position) if by_position else 0
        seen: set[int] = set()
        tenant_of: dict[str, str | None] = {}
        unsealed = 0
        for row in rows:
            seen.add(row.position)
            sid = str(row.originator_id)
            if row.originator_version == 1:
                tenant_of[sid] = tenant_of_first_event(row)
            found = by_position.get(row.position)
            if found is None:
                if row.position <= head:
                    fail(
                        0,
                        row.position,
                        f"position {row.position}: an event that was never sealed "
                        "sits inside the sealed log (inserted afterwards?)",
                    )
                else:
                    unsealed += 1
                continue
            _, _, leaf_stream, leaf_version, tenant, expected = found
            if leaf_hash(row, tenant).hex() != expected or (leaf_stream, leaf_version) != (
                sid,
                row.originator_version,
            ):
                fail(
                    0,
                    row.position,
                    f"position {row.position}: the stored event differs from its "
                    "sealed leaf (changed or moved?)",
                )
            elif tenant != tenant_of.get(sid):
                fail(0, row.position, f"position {row.position}: the leaf names another tenant")
        for _, position, *_ in sealed:
            if position not in seen:
                fail(0, position, f"position {position}: a sealed event is missing (deleted?)")
        self._verify_trees(sealed, stored, frontier_rows, fail)
        failures.sort(key=lambda f: f[0])
        return LogVerifyReport(
            len(sealed),
            unsealed,
            len(stored),
            int(stored[-1].tree_size) if stored else None,
            [text for _, text in failures],
        )

    def _verify_trees(
        self,
        sealed: list[tuple[int, int, str, int, str | None, str]],
        stored: list[Any],
        frontier_rows: dict[int, list[tuple[int, int, str]]],
        fail: Any,
    ) -> None:
        keys = {k.key_id: k.public_key for k in self.signer.public_keys()}
        by_size = {int(c.tree_size): c for c in stored}
        for size in sorted(set(frontier_rows) - set(by_size)):
            fail(1, size, f"merkle_frontier at {size}: no checkpoint {size} (deleted?)")
        state = SealState()
        previous: tuple[int, bytes, list[tuple[int, bytes]]] | None = None
        last_position = 0
        pending = sorted(by_size)
        hashes: list[bytes] = []
        for index, position, stream, version, tenant, h in sealed:
            if index != state.size:
                fail(1, index, f"merkle_leaves: leaf {state.size} is missing")
                return
            if position <= last_position:
                fail(0, position, f"position {position}: leaf {index} is out of log order")
            last_position = position
            leaf = bytes.fromhex(h)
            hashes.append(leaf)
            state.add(stream, version, position, tenant, leaf)
            while pending and pending[0] == state.size:
                size = pending.pop(0)
                previous = self._verify_checkpoint(
                    by_size[size], state, previous, hashes, frontier_rows.get(size, []), keys, fail
                )
        for size in pending:
            fail(1, size, f"checkpoint {size}: covers more leaves than are sealed ({state.size})")

    def _verify_checkpoint(
        self,
        row: Any,
        state: SealState,
        previous: tuple[int, bytes, list[tuple[int, bytes]]] | None,
        hashes: list[bytes],
        frontier: list[tuple[int, int, str]],
        keys: dict[str, bytes],
        fail: Any,
    ) -> tuple[int, bytes, list[tuple[int, bytes]]]:
        size = int(row.tree_size)
        root, heads = state.frontier.root(), state.heads.flush()
        computed = list(state.frontier.subtrees)
        try:
            checkpoint, sigs = parse_note(row.note)
        except NoteFormatError as e:
            fail(1, size, f"checkpoint {size}: its note does not parse ({e})")
            return size, root, computed
        noted = checkpoint.stream_heads()
        if checkpoint.size != size or checkpoint.root.hex() != row.root_hash:
            fail(1, size, f"checkpoint {size}: its stored columns differ from its note")
        if noted is None or (noted.root.hex(), noted.count) != (row.heads_root, row.heads_count):
            fail(1, size, f"checkpoint {size}: its stored stream heads differ from its note")
        if not any(
            s.key_id.hex() in keys
            and s.key_name == row.key_name
            and verify_note_signature(checkpoint.body(), s, keys[s.key_id.hex()])
            for s in sigs
        ):
            fail(1, size, f"checkpoint {size}: no published key verifies its signature")
        if checkpoint.root != root:
            fail(1, size, f"checkpoint {size}: the sealed leaves do not give its root")
        if noted is not None and (noted.root, noted.count) != (heads.root, heads.count):
            fail(1, size, f"checkpoint {size}: the sealed leaves do not give its stream heads")
        kept = [(n, bytes.fromhex(h)) for _, n, h in frontier]
        if kept != computed:
            fail(1, size, f"merkle_frontier at {size}: differs from the sealed leaves' frontier")
        if previous is not None:
            first, first_root, first_frontier = previous
            proof = merkle.consistency_proof_from(first_frontier, hashes[first:size])
            if not merkle.verify_consistency(first, size, first_root, checkpoint.root, proof):
                fail(1, size, f"checkpoint {size}: not consistent with checkpoint {first}")
        return size, checkpoint.root, computed
