"""The witness's answers by the protocol (c2sp.org/tlog-witness): unknown log 404, untrusted
signature 403, malformed 400, stale old size 409 with its size, a fork at the same size 409
and kept, a bad proof 422 and kept; and a good checkpoint cosigned, its state persisted."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.evidence import merkle
from domain.evidence.checkpoint import (
    Checkpoint,
    NoteSignature,
    key_id,
    parse_signed_note,
    parse_verifier_key,
    signed_note,
    verifier_key,
)
from domain.evidence.cosignature import add_checkpoint_body
from infrastructure.evidence.cosigning import raw_public, verify_cosignature
from infrastructure.evidence.witness import WitnessService, witness_vkey

ORIGIN = "example.test/log"


def _note(key: Ed25519PrivateKey, name: str, leaves: list[bytes]) -> str:
    body = Checkpoint(ORIGIN, len(leaves), merkle.root(leaves)).body()
    sig = NoteSignature(name, key_id(name, raw_public(key)), key.sign(body.encode()))
    return signed_note(body, [sig])


def test_the_witness_answers_by_the_protocol(tmp_path: Path) -> None:
    log_key, name = Ed25519PrivateKey.generate(), f"{ORIGIN}/k1"
    vkey = parse_verifier_key(verifier_key(name, raw_public(log_key)))
    w = WitnessService(tmp_path, "audit.test/w", ORIGIN, [vkey])
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(10)]
    n4, n7 = _note(log_key, name, leaves[:4]), _note(log_key, name, leaves[:7])

    first = w.add_checkpoint(add_checkpoint_body(0, [], n4))
    assert first.status == 200
    body4, _ = parse_signed_note(n4)
    _, sigs = parse_signed_note(body4 + "\n" + first.body)
    assert verify_cosignature(sigs[0], witness_vkey(tmp_path, "audit.test/w"), body4)

    stale = w.add_checkpoint(add_checkpoint_body(0, [], n7))
    assert (stale.status, stale.body, stale.content_type) == (409, "4\n", "text/x.tlog.size")
    bad = w.add_checkpoint(add_checkpoint_body(4, [b"\0" * 32], n7))
    assert bad.status == 422
    good = w.add_checkpoint(add_checkpoint_body(4, merkle.consistency_proof(4, leaves[:7]), n7))
    assert good.status == 200
    fork = _note(log_key, name, [*leaves[:6], b"\1" * 32])
    assert w.add_checkpoint(add_checkpoint_body(7, [], fork)).status == 409
    assert w.add_checkpoint(add_checkpoint_body(0, [], n4)).status == 409  # smaller after larger

    other = Ed25519PrivateKey.generate()
    assert (
        w.add_checkpoint(add_checkpoint_body(7, [], _note(other, name, leaves[:8]))).status == 403
    )
    stranger = signed_note(
        Checkpoint("other.test/log", 1, leaves[0]).body(),
        [NoteSignature(name, b"abcd", b"x" * 64)],
    )
    assert w.add_checkpoint(add_checkpoint_body(0, [], stranger)).status == 404
    assert w.add_checkpoint(b"old x\n\n" + n4.encode()).status == 400

    reasons = [r["reason"] for r in w.refusals()]
    assert reasons == [
        "the consistency proof does not verify (inconsistent trees)",
        "another tree of the size cosigned (fork)",
        "a smaller tree after a larger one (rollback)",
    ]
    # the state survives a restart
    again = WitnessService(tmp_path, "audit.test/w", ORIGIN, [vkey])
    assert again.latest() is not None and again.latest()[0] == 7  # type: ignore[index]
