"""A witness for our log (c2sp.org/tlog-witness): what `fapiao witness serve` runs for an
external auditor, a tenant, or the group's internal audit.

It trusts one log (an origin and its verifier keys), keeps the latest tree it cosigned in its
own SQLite file, and answers add-checkpoint: it cosigns a checkpoint only if our signature
verifies and the consistency proof from the size it last cosigned does, so it never cosigns two
inconsistent trees nor a smaller tree after a larger one. Checking and recording happen in one
transaction under one lock, and the new state is committed (synchronous=FULL) before the answer
is sent. A refused request that carries a valid log signature and shows a fork, a rollback or a
bad proof is kept whole in `refusals`: evidence of a split view.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.evidence import merkle
from domain.evidence.checkpoint import (
    NoteFormatError,
    VerifierKey,
    check_key_name,
    check_origin,
    parse_note,
)
from domain.evidence.cosignature import CosignerKey, cosigner_key_id, parse_add_checkpoint
from infrastructure.evidence.checkpoint_signer import verify_note_signature
from infrastructure.evidence.cosigning import cosign, raw_public

MAX_REQUEST_BYTES = 64 * 1024

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS latest (
         origin TEXT PRIMARY KEY, tree_size INTEGER NOT NULL, root BLOB NOT NULL,
         note TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cosigned (
         origin TEXT NOT NULL, tree_size INTEGER NOT NULL, root BLOB NOT NULL,
         note TEXT NOT NULL, cosignature TEXT NOT NULL, cosigned_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS refusals (
         refused_at TEXT NOT NULL, origin TEXT NOT NULL, status INTEGER NOT NULL,
         reason TEXT NOT NULL, held_size INTEGER NOT NULL, request BLOB NOT NULL)""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t}
            BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"""
        for t in ("cosigned", "refusals")
        for op in ("UPDATE", "DELETE")
    ),
]


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def load_witness_key(state_dir: Path) -> Ed25519PrivateKey:
    """The witness's Ed25519 key (`witness.ed25519`, hex seed, mode 0600), made on first use."""
    path = state_dir / "witness.ed25519"
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(32).hex())
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))


def witness_vkey(state_dir: Path, name: str) -> CosignerKey:
    check_key_name(name)
    raw = raw_public(load_witness_key(state_dir))
    return CosignerKey(name, cosigner_key_id(name, raw), raw)


class WitnessService:
    def __init__(
        self, state_dir: Path, name: str, origin: str, log_keys: list[VerifierKey]
    ) -> None:
        if not log_keys:
            raise ValueError("a witness needs the log's verifier key (--log-key)")
        check_key_name(name)
        check_origin(origin)
        self.name, self.origin, self.log_keys = name, origin, log_keys
        self.key = load_witness_key(state_dir)
        self.db = sqlite3.connect(
            state_dir / "witness.db", isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self.db.execute(statement)
        self._lock = threading.Lock()

    def add_checkpoint(self, request: bytes) -> Answer:
        if len(request) > MAX_REQUEST_BYTES:
            return Answer(400, f"the request is larger than {MAX_REQUEST_BYTES} bytes\n")
        try:
            old, proof, note = parse_add_checkpoint(request)
            checkpoint, sigs = parse_note(note)
        except NoteFormatError as e:
            return Answer(400, f"{e}\n")
        if checkpoint.origin != self.origin:
            return Answer(404, f"unknown log {checkpoint.origin!r}\n")
        body = checkpoint.body()
        if not any(
            s.key_id == k.key_id
            and s.key_name == k.name
            and verify_note_signature(body, s, k.public_key)
            for s in sigs
            for k in self.log_keys
        ):
            return Answer(403, "no signature by a key this witness trusts for the log\n")
        if old > checkpoint.size:
            return Answer(400, "the old size is larger than the checkpoint's\n")
        if old == 0 and proof:
            return Answer(400, "a proof from size 0 must be empty\n")
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                answer = self._decide(old, proof, note, checkpoint.size, checkpoint.root, request)
                self.db.execute("COMMIT")  # persisted before the answer leaves
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return answer

    def _decide(
        self, old: int, proof: list[bytes], note: str, size: int, root: bytes, request: bytes
    ) -> Answer:
        row = self.db.execute(
            "SELECT tree_size, root FROM latest WHERE origin = ?", (self.origin,)
        ).fetchone()
        held_size, held_root = (int(row[0]), bytes(row[1])) if row else (0, b"")
        conflict = Answer(409, f"{held_size}\n", "text/x.tlog.size")
        if old != held_size:
            if size < held_size:
                self._refuse(
                    409, "a smaller tree after a larger one (rollback)", held_size, request
                )
            elif size == held_size and root != held_root:
                self._refuse(409, "another tree of the size cosigned (fork)", held_size, request)
            return conflict
        if size == held_size:
            if root != held_root:
                self._refuse(409, "another tree of the size cosigned (fork)", held_size, request)
                return conflict
        elif held_size and not merkle.verify_consistency(held_size, size, held_root, root, proof):
            self._refuse(
                422,
                "the consistency proof does not verify (inconsistent trees)",
                held_size,
                request,
            )
            return Answer(422, "the consistency proof does not verify\n")
        body, _, _ = note.rpartition("\n\n")
        line = cosign(self.key, self.name, body + "\n").line()
        now = datetime.now(UTC).isoformat()
        self.db.execute(
            "INSERT INTO latest (origin, tree_size, root, note, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, "
            "root = excluded.root, note = excluded.note, updated_at = excluded.updated_at",
            (self.origin, size, root, note, now),
        )
        self.db.execute(
            "INSERT INTO cosigned VALUES (?, ?, ?, ?, ?, ?)",
            (self.origin, size, root, note, line, now),
        )
        return Answer(200, line)

    def _refuse(self, status: int, reason: str, held_size: int, request: bytes) -> None:
        self.db.execute(
            "INSERT INTO refusals VALUES (?, ?, ?, ?, ?, ?)",
            (datetime.now(UTC).isoformat(), self.origin, status, reason, held_size, request),
        )

    def refusals(self) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT refused_at, status, reason, held_size, request FROM refusals ORDER BY rowid"
        ).fetchall()
        return [
            {
                "refused_at": r[0],
                "status": r[1],
                "reason": r[2],
                "held_size": r[3],
                "request": bytes(r[4]).decode(errors="replace"),
            }
            for r in rows
        ]

    def latest(self) -> tuple[int, str] | None:
        row = self.db.execute(
            "SELECT tree_size, note FROM latest WHERE origin = ?", (self.origin,)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))
