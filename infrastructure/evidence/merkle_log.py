"""The Merkle log in SQL: the sealing projection, signed checkpoints, proofs, and verification
of the live ledger against its seal.

Roots and proofs are computed from the stored leaf hashes, never from the event table.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from application.evidence.leaf_encoding import leaf_hash
from application.ports import StoredEventRow
from domain.evidence import merkle
from domain.evidence.checkpoint import Checkpoint, parse_note
from infrastructure.evidence.checkpoint_signer import CheckpointSigner, verify_note_signature
from infrastructure.store.tables import checkpoints, merkle_frontier, merkle_leaves

log = logging.getLogger("fapiao.happenings")


def _leaves(conn: Connection, size: int | None = None) -> list[bytes]:
    query = select(merkle_leaves.c.leaf_hash).order_by(merkle_leaves.c.leaf_index)
    if size is not None:
        query = query.limit(size)
    return [bytes.fromhex(h) for (h,) in conn.execute(query)]


def _frontier(conn: Connection) -> merkle.Frontier:
    """The stored right edge; rebuilt from the leaves once if missing (an older database)."""
    rows = list(conn.execute(select(merkle_frontier).order_by(merkle_frontier.c.slot)))
    frontier = merkle.Frontier([(int(r.size), bytes.fromhex(r.hash)) for r in rows])
    if not rows:
        for leaf in _leaves(conn):
            frontier.append(leaf)
    return frontier


def _store_frontier(conn: Connection, frontier: merkle.Frontier) -> None:
    conn.execute(delete(merkle_frontier))
    if frontier.subtrees:
        conn.execute(
            merkle_frontier.insert(),
            [{"slot": i, "size": n, "hash": h.hex()} for i, (n, h) in enumerate(frontier.subtrees)],
        )


def _sign(
    conn: Connection, signer: CheckpointSigner, size: int, root: bytes | None = None
) -> dict[str, Any]:
    root = root if root is not None else merkle.root(_leaves(conn, size))
    text = signer.sign(Checkpoint(signer.origin, size, root))
    _, sigs = parse_note(text)
    row = {
        "tree_size": size,
        "root_hash": root.hex(),
        "signed_at": datetime.now(UTC),
        "key_name": sigs[0].key_name,
        "note": text,
    }
    conn.execute(checkpoints.insert(), [row])
    log.info(
        "checkpoint signed",
        extra={"tree_size": size, "root_hash": row["root_hash"], "key_name": row["key_name"]},
    )
    return row


def _latest(conn: Connection) -> Any:
    return conn.execute(
        select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()


class SealProjection:
    """Appends every stored event, in log order, as a leaf; signs checkpoints as it goes."""

    name = "seal"
    topics: frozenset[str] = frozenset()
    raw = True  # the worker hands over stored rows (with recorded_at), not decoded events

    def __init__(
        self,
        signer: CheckpointSigner,
        every: int = 1000,
        interval: timedelta = timedelta(minutes=10),
    ) -> None:
        self.signer, self.every, self.interval = signer, every, interval

    def handles(self, event: object) -> bool:
        return True

    def apply_batch(
        self, conn: Connection, items: Sequence[tuple[int, StoredEventRow]]
    ) -> list[tuple[int, Any, Exception]]:
        if not items:
            return []
        frontier = _frontier(conn)
        first = frontier.size
        leaves = []
        for i, (_, row) in enumerate(items):
            h = leaf_hash(row)
            frontier.append(h)
            leaves.append(
                {
                    "leaf_index": first + i,
                    "position": row.position,
                    "stream_id": str(row.originator_id),
                    "stream_version": row.originator_version,
                    "leaf_hash": h.hex(),
                }
            )
        conn.execute(merkle_leaves.insert(), leaves)
        _store_frontier(conn, frontier)
        size = frontier.size
        latest = _latest(conn)
        signed_size = latest.tree_size if latest else 0
        stale = latest is None or datetime.now(UTC) - latest.signed_at >= self.interval
        if size - signed_size >= self.every or (stale and size > signed_size):
            _sign(conn, self.signer, size, frontier.root())
        return []

    def reset(self, conn: Connection) -> None:
        """Leaves are recomputed identically; signed checkpoints are kept (and checked)."""
        conn.execute(delete(merkle_leaves))
        conn.execute(delete(merkle_frontier))


@dataclass
class LogVerifyReport:
    leaves: int
    unsealed: int
    checkpoint_size: int | None
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


class MerkleLog:
    def __init__(self, engine: Engine, write_engine: Engine, signer: CheckpointSigner) -> None:
        self.engine, self.write_engine, self.signer = engine, write_engine, signer

    def checkpoint_now(self) -> dict[str, Any] | None:
        """Sign a checkpoint at the sealed size, unless the latest already covers it."""
        with self.write_engine.begin() as conn:
            frontier = _frontier(conn)
            size = frontier.size
            latest = _latest(conn)
            if size == 0 or (latest and latest.tree_size >= size):
                return dict(latest._mapping) if latest else None
            return _sign(conn, self.signer, size, frontier.root())

    def checkpoint_at(self, size: int) -> dict[str, Any]:
        """A checkpoint of exactly the first `size` sealed events (what a backup holds), signed
        now unless one of that size exists."""
        with self.write_engine.begin() as conn:
            found = conn.execute(select(checkpoints).where(checkpoints.c.tree_size == size)).first()
            if found is not None:
                return dict(found._mapping)
            sealed = int(conn.execute(select(func.count()).select_from(merkle_leaves)).scalar_one())
            if sealed < size:
                raise LookupError(f"only {sealed} events are sealed; cannot sign {size}")
            return _sign(conn, self.signer, size)

    def sealed_size(self) -> int:
        """How many events are sealed (leaves in the tree)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(merkle_leaves)).scalar_one())

    def latest(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = _latest(conn)
        return None if row is None else dict(row._mapping)

    def checkpoint(self, size: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints).where(checkpoints.c.tree_size == size)).first()
        return None if row is None else dict(row._mapping)

    def leaf(self, position: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(merkle_leaves).where(merkle_leaves.c.position == position)
            ).first()
        return None if row is None else dict(row._mapping)

    def inclusion(self, position: int, tree_size: int) -> tuple[int, list[bytes]]:
        """(leaf index, audit path) of the event at `position` in the tree of `tree_size`."""
        leaf = self.leaf(position)
        if leaf is None:
            raise LookupError(f"position {position} is not sealed yet")
        with self.engine.connect() as conn:
            leaves = _leaves(conn, tree_size)
        if leaf["leaf_index"] >= len(leaves) or len(leaves) != tree_size:
            raise LookupError(f"position {position} is not in a tree of size {tree_size}")
        return int(leaf["leaf_index"]), merkle.inclusion_proof(int(leaf["leaf_index"]), leaves)

    def tree(self, size: int) -> tuple[merkle.Tree, dict[int, int]]:
        """The tree of `size` leaves built once, and each sealed position's leaf index."""
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(merkle_leaves.c.position, merkle_leaves.c.leaf_hash)
                    .order_by(merkle_leaves.c.leaf_index)
                    .limit(size)
                )
            )
        return (
            merkle.Tree([bytes.fromhex(h) for _, h in rows]),
            {int(p): i for i, (p, _) in enumerate(rows)},
        )

    def consistency(self, first: int, second: int) -> list[bytes]:
        with self.engine.connect() as conn:
            leaves = _leaves(conn, second)
        if len(leaves) != second:
            raise LookupError(f"the log has no tree of size {second} yet")
        return merkle.consistency_proof(first, leaves)

    def verify(self, rows: Iterator[StoredEventRow]) -> LogVerifyReport:
        """Recompute every leaf from the stored events; check the latest checkpoint."""
        failures: list[str] = []
        with self.engine.connect() as conn:
            sealed = [
                (int(r.leaf_index), int(r.position), r.leaf_hash)
                for r in conn.execute(select(merkle_leaves).order_by(merkle_leaves.c.leaf_index))
            ]
            latest = _latest(conn)
        by_position = {p: (i, h) for i, p, h in sealed}
        head = sealed[-1][1] if sealed else 0
        seen: set[int] = set()
        unsealed = 0
        for row in rows:
            seen.add(row.position)
            if row.position not in by_position:
                if row.position <= head:
                    failures.append(
                        f"position {row.position}: an event that was never sealed "
                        "sits inside the sealed log (inserted afterwards?)"
                    )
                else:
                    unsealed += 1
                continue
            _, expected = by_position[row.position]
            if leaf_hash(row).hex() != expected:
                failures.append(
                    f"position {row.position}: the stored event differs from its "
                    "sealed leaf (changed or moved?)"
                )
        for _, position, _ in sealed:
            if position not in seen:
                failures.append(f"position {position}: a sealed event is missing (deleted?)")
        if latest is not None:
            leaves = [bytes.fromhex(h) for _, _, h in sealed[: latest.tree_size]]
            if merkle.root(leaves).hex() != latest.root_hash:
                failures.append(
                    f"checkpoint {latest.tree_size}: the sealed leaves do not give its root"
                )
            checkpoint, sigs = parse_note(latest.note)
            keys = {k.key_id: k.public_key for k in self.signer.public_keys()}
            if not any(
                s.key_id.hex() in keys
                and verify_note_signature(checkpoint, s, keys[s.key_id.hex()])
                for s in sigs
            ):
                failures.append(
                    f"checkpoint {latest.tree_size}: no published key verifies its signature"
                )
        failures.sort(
            key=lambda f: int(f.split()[1].rstrip(":")) if f.startswith("position") else -1
        )
        return LogVerifyReport(
            len(sealed), unsealed, latest.tree_size if latest else None, failures
        )


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
