"""Anchors outside the operator: RFC 3161 timestamp tokens and witness cosignatures for every
signed checkpoint, fetched off the sealing path, kept append-only beside the checkpoint, and
the announcement of each anchored checkpoint to the tenants.

The sealer only signs. This worker (a thread of `fapiao serve` / `fapiao worker`, or one
`fapiao ledger anchor` run) looks for checkpoints missing a token from a configured TSA or,
for the latest checkpoint, a cosignature from a configured witness; it asks, checks the answer
and stores it. A TSA or witness that fails is retried with exponential backoff; what is still
missing is counted as outstanding (/readyz, `fapiao ledger status`, metrics).

Witnesses only cosign a tree at least as large as the last one they cosigned, so only the
latest checkpoint is sent to them; an older checkpoint lacking cosignatures stays without.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from domain.evidence.checkpoint import (
    DASH,
    NoteFormatError,
    parse_checkpoint,
    parse_signed_note,
)
from domain.evidence.cosignature import (
    CosignerKey,
    add_checkpoint_body,
    parse_cosigner_vkey,
)
from infrastructure.evidence import anchor_transport
from infrastructure.evidence.cosigning import verify_cosignature
from infrastructure.evidence.merkle_log import MerkleLog
from infrastructure.evidence.timestamping import TimestampError, load_cas, request_token
from infrastructure.outbound import OutboundGuard, OutboundResponse
from infrastructure.store.tables import (
    checkpoint_announcements,
    checkpoint_cosignatures,
    checkpoint_timestamps,
    checkpoints,
)

logger = logging.getLogger("fapiao.anchors")
MAX_BACKOFF = 600.0

Announce = Callable[[Connection, int, dict[str, Any]], None]


class WitnessRefusedError(Exception):
    """The witness answered, and did not cosign."""


@dataclass(frozen=True)
class Witness:
    url: str
    key: CosignerKey


@dataclass
class _Backoff:
    """When a TSA or witness may be tried again, and the last error."""

    delay: float
    next_at: float = 0.0
    failures: int = 0
    error: str | None = None

    def failed(self, error: str, base: float) -> None:
        self.failures += 1
        self.delay = min(base * 2 ** (self.failures - 1), MAX_BACKOFF)
        self.next_at = time.monotonic() + self.delay
        self.error = error

    def ok(self) -> None:
        self.failures, self.next_at, self.error = 0, 0.0, None


@dataclass
class AnchorStatus:
    tokens_outstanding: int
    cosignatures_outstanding: int
    quorum: int
    errors: dict[str, str] = field(default_factory=dict)


def parse_witnesses(config: dict[str, str], guard: OutboundGuard) -> list[Witness]:
    """FAPIAO_WITNESSES: {url: witness verifier key}; ValueError naming the bad entry."""
    witnesses = []
    for url, vkey in config.items():
        anchor_transport.check_url(guard, url)
        try:
            witnesses.append(Witness(url, parse_cosigner_vkey(vkey)))
        except NoteFormatError as e:
            raise ValueError(f"witness {url}: {e}") from None
    return witnesses


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Anchorer:
    def __init__(
        self,
        engine: Engine,
        write_engine: Engine,
        merkle: MerkleLog,
        guard: OutboundGuard,
        tsa_urls: list[str],
        tsa_cas: list[x509.Certificate],
        witnesses: list[Witness],
        quorum: int | None = None,
        backoff_seconds: float = 5.0,
        timeout: float = 10.0,
        announce: Announce | None = None,
    ) -> None:
        for url in tsa_urls:
            anchor_transport.check_url(guard, url)
        if tsa_urls and not tsa_cas:
            raise ValueError("FAPIAO_TSA_URLS needs FAPIAO_TSA_CA_FILE (the TSAs' CA certificates)")
        self.engine, self.write_engine, self.merkle = engine, write_engine, merkle
        self.guard = guard
        self.tsa_urls, self.tsa_cas, self.witnesses = tsa_urls, tsa_cas, witnesses
        self.quorum = len(witnesses) if quorum is None else min(quorum, len(witnesses))
        self.base, self.timeout, self.announce = backoff_seconds, timeout, announce
        self._backoff: dict[str, _Backoff] = {}

    @classmethod
    def from_files(cls, tsa_ca_pem: bytes | None, **kwargs: Any) -> Anchorer:
        return cls(tsa_cas=load_cas(tsa_ca_pem) if tsa_ca_pem else [], **kwargs)

    # ---- one round -----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Fetch what is missing and due; announce what is anchored. How many anchors were kept."""
        kept = self._timestamps() + self._cosignatures()
        self._announcements()
        return kept

    def _due(self, target: str) -> _Backoff:
        return self._backoff.setdefault(target, _Backoff(self.base))

    def _timestamps(self) -> int:
        kept = 0
        for url in self.tsa_urls:
            state = self._due(url)
            if time.monotonic() < state.next_at:
                continue
            for size, note in self._missing_tokens(url):
                body, _ = parse_signed_note(note)
                try:
                    token = request_token(self.guard, url, body, self.tsa_cas, self.timeout)
                except TimestampError as e:
                    state.failed(str(e), self.base)
                    logger.warning("anchors: no timestamp token for checkpoint %s: %s", size, e)
                    break
                state.ok()
                kept += self._insert(
                    checkpoint_timestamps,
                    {
                        "tree_size": size,
                        "tsa_url": url,
                        "token": _b64(token.der),
                        "gen_time": token.gen_time,
                        "received_at": datetime.now(UTC),
                    },
                )
        return kept

    def _missing_tokens(self, url: str, limit: int = 100) -> list[tuple[int, str]]:
        t = checkpoint_timestamps.c
        have = select(t.tree_size).where(t.tsa_url == url)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(checkpoints.c.tree_size, checkpoints.c.note)
                .where(checkpoints.c.tree_size.not_in(have))
                .order_by(checkpoints.c.tree_size)
                .limit(limit)
            )
            return [(int(r.tree_size), r.note) for r in rows]

    def _insert(self, table: Any, row: dict[str, Any]) -> int:
        try:
            with self.write_engine.begin() as conn:
                conn.execute(table.insert(), [row])
        except IntegrityError:  # another anchorer kept the same one meanwhile
            return 0
        return 1

    # ---- witnesses -----------------------------------------------------------------------------

    def _cosignatures(self) -> int:
        latest = self.merkle.latest()
        if latest is None or not self.witnesses:
            return 0
        size, note = int(latest["tree_size"]), latest["note"]
        have = self._cosigned_by(size)
        kept = 0
        for witness in self.witnesses:
            if witness.key.name in have:
                continue
            state = self._due(witness.url)
            if time.monotonic() < state.next_at:
                continue
            try:
                line, stamp = self._add_checkpoint(witness, size, note)
            except (WitnessRefusedError, anchor_transport.TransportError) as e:
                state.failed(str(e), self.base)
                logger.error(
                    "anchors: witness %s did not cosign checkpoint %s: %s", witness.url, size, e
                )
                continue
            state.ok()
            kept += self._insert(
                checkpoint_cosignatures,
                {
                    "tree_size": size,
                    "witness": witness.key.name,
                    "line": line,
                    "cosigned_at": datetime.fromtimestamp(stamp, UTC),
                    "received_at": datetime.now(UTC),
                },
            )
        return kept

    def _witness_size(self, witness: Witness) -> int:
        """The largest of our checkpoints this witness cosigned (what it should hold)."""
        c = checkpoint_cosignatures.c
        with self.engine.connect() as conn:
            top = conn.execute(
                select(func.max(c.tree_size)).where(c.witness == witness.key.name)
            ).scalar()
        return int(top or 0)

    def _add_checkpoint(self, witness: Witness, size: int, note: str) -> tuple[str, int]:
        """Send add-checkpoint (with the proof from the witness's size); on a 409 naming a size
        we can prove from, send once more from it. (cosignature line, its timestamp)."""
        old = self._witness_size(witness)
        for _ in range(2):
            if old > size:
                raise WitnessRefusedError(
                    f"the witness holds a tree of {old} leaves, larger than our checkpoint "
                    f"{size}: our log was rolled back, or shows it another view"
                )
            proof = self._proof(old, size)
            response = anchor_transport.post(
                self.guard,
                witness.url.rstrip("/") + "/add-checkpoint",
                add_checkpoint_body(old, proof, note),
                "text/plain; charset=utf-8",
                self.timeout,
            )
            text = response.body.decode("utf-8", "replace").strip()
            if response.status == 409 and text.isascii() and text.isdigit():
                # the witness holds another size (text/x.tlog.size): prove from it
                if int(text) == old:
                    raise WitnessRefusedError(
                        "409 conflict: the witness holds another tree of that size (a fork)"
                    )
                old = int(text)
                continue
            return self._cosignature(witness, size, note, response)
        raise WitnessRefusedError(f"409 conflict: the witness's size kept changing ({old})")

    def _proof(self, old: int, size: int) -> list[bytes]:
        if not 0 < old < size:
            return []
        try:
            return self.merkle.consistency_from_checkpoint(old, size)
        except LookupError:  # the witness names a size we have no checkpoint of
            return self.merkle.consistency(old, size)

    def _cosignature(
        self, witness: Witness, size: int, note: str, response: OutboundResponse
    ) -> tuple[str, int]:
        status = response.status
        reasons = {
            404: "404: the witness does not know our log (origin)",
            403: "403: the witness does not trust our signing key",
            422: "422: the witness found the consistency proof bad (a rewritten log?)",
            409: "409 conflict: the witness holds another tree of that size (a fork)",
            400: "400: the witness could not read the request",
        }
        if status != 200:
            raise WitnessRefusedError(reasons.get(status, f"HTTP {status}"))
        body, _ = parse_signed_note(note)
        for line in response.body.decode("utf-8", "replace").split("\n"):
            if not line.startswith(DASH):
                continue
            try:
                _, sigs = parse_signed_note(body + "\n" + line + "\n")
            except NoteFormatError:
                continue
            stamp = verify_cosignature(sigs[0], witness.key, body)
            if stamp is not None:
                return line, stamp
        raise WitnessRefusedError("200 without a valid cosignature by the configured key")

    def _cosigned_by(self, size: int) -> set[str]:
        c = checkpoint_cosignatures.c
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(c.witness).where(c.tree_size == size))}

    # ---- reading ---------------------------------------------------------------------------

    def anchors(self, size: int) -> dict[str, Any]:
        """A checkpoint's timestamp tokens and cosignatures as kept."""
        t, c = checkpoint_timestamps.c, checkpoint_cosignatures.c
        with self.engine.connect() as conn:
            tokens = conn.execute(
                select(t.tsa_url, t.token, t.gen_time)
                .where(t.tree_size == size)
                .order_by(t.tsa_url)
            ).all()
            cosigs = conn.execute(
                select(c.witness, c.line, c.cosigned_at)
                .where(c.tree_size == size)
                .order_by(c.witness)
            ).all()
        return {
            "timestamps": [
                {"tsa_url": r.tsa_url, "token": r.token, "gen_time": r.gen_time} for r in tokens
            ],
            "cosignatures": [
                {"witness": r.witness, "line": r.line, "cosigned_at": r.cosigned_at} for r in cosigs
            ],
        }

    def anchored_note(self, note: str, size: int) -> str:
        """The checkpoint's note with the witnesses' cosignature lines added."""
        lines = [a["line"] for a in self.anchors(size)["cosignatures"]]
        return note + "".join(f"{line}\n" for line in lines)

    def status(self) -> AnchorStatus:
        with self.engine.connect() as conn:
            count = int(conn.execute(select(func.count()).select_from(checkpoints)).scalar() or 0)
            t = checkpoint_timestamps.c
            tokens = 0
            for url in self.tsa_urls:
                have = conn.execute(
                    select(func.count()).select_from(checkpoint_timestamps).where(t.tsa_url == url)
                ).scalar()
                tokens += count - int(have or 0)
        latest = self.merkle.latest()
        cosigs = 0
        if latest is not None and self.witnesses:
            have_names = self._cosigned_by(int(latest["tree_size"]))
            cosigs = sum(1 for w in self.witnesses if w.key.name not in have_names)
        errors = {k: v.error for k, v in self._backoff.items() if v.error}
        return AnchorStatus(tokens, cosigs, self.quorum, errors)

    # ---- announcing ------------------------------------------------------------------------

    def _announcements(self) -> None:
        """Announce each checkpoint once it has every TSA's token and the witness quorum (or,
        for witnesses, once a newer checkpoint supersedes it)."""
        if self.announce is None:
            return
        a = checkpoint_announcements.c
        with self.engine.connect() as conn:
            latest = conn.execute(select(func.max(checkpoints.c.tree_size))).scalar()
            rows = conn.execute(
                select(checkpoints.c.tree_size, checkpoints.c.note, checkpoints.c.signed_at)
                .where(checkpoints.c.tree_size.not_in(select(a.tree_size)))
                .order_by(checkpoints.c.tree_size)
                .limit(100)
            ).all()
        for row in rows:
            size = int(row.tree_size)
            anchors = self.anchors(size)
            tsas = {x["tsa_url"] for x in anchors["timestamps"]}
            if not set(self.tsa_urls) <= tsas:
                break  # in order: a later one waits for this one's tokens
            if size == latest and len(anchors["cosignatures"]) < self.quorum:
                break
            payload = self.payload(row.note, size, row.signed_at, anchors)
            try:
                with self.write_engine.begin() as conn:
                    conn.execute(
                        checkpoint_announcements.insert(),
                        [{"tree_size": size, "announced_at": datetime.now(UTC)}],
                    )
                    self.announce(conn, size, payload)
            except IntegrityError:
                continue

    def since(self, size: int, limit: int) -> list[dict[str, Any]]:
        """The checkpoints signed after tree size `size`, oldest first, as tenants get them."""
        c = checkpoints.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.tree_size, c.note, c.signed_at)
                .where(c.tree_size > size)
                .order_by(c.tree_size)
                .limit(limit)
            ).all()
        return [self.payload(r.note, int(r.tree_size), r.signed_at) for r in rows]

    def payload(
        self, note: str, size: int, signed_at: datetime, anchors: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A checkpoint as tenants receive it: the note with cosignatures, and the tokens."""
        anchors = anchors or self.anchors(size)
        checkpoint = parse_checkpoint(parse_signed_note(note)[0])
        lines = [x["line"] for x in anchors["cosignatures"]]
        return {
            "origin": checkpoint.origin,
            "tree_size": size,
            "root_hash": checkpoint.root_b64,
            "signed_at": signed_at.isoformat(),
            "note": note + "".join(f"{line}\n" for line in lines),
            "timestamps": [
                {
                    "tsa_url": x["tsa_url"],
                    "token": x["token"],
                    "gen_time": x["gen_time"].isoformat(),
                }
                for x in anchors["timestamps"]
            ],
            "cosignatures": [
                {"witness": x["witness"], "cosigned_at": x["cosigned_at"].isoformat()}
                for x in anchors["cosignatures"]
            ],
        }
