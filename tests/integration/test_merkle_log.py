"""The sealed log on both stores: leaves, signed checkpoints, proofs, and `ledger verify`
catching tampering done with the append-only guard disabled, as an attacker would.

Proofs and signatures are checked here with code written from the RFCs in this file, not with
the product's own verifier."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text

from application.invoices.lifecycle import SubmitRequest
from infrastructure.bootstrap import Services
from tests.builders import SELLER, a_draft, by
from tests.test_cli import fapiao

# ---- an independent RFC 9162 verifier (2.1.3.2) and C2SP note check --------------------------


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def independent_inclusion(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            r = _h(b"\x01" + r + p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def independent_note_check(note: str, vkey: str) -> tuple[int, bytes]:
    """Verify a signed note with a verifier key `name+keyid+base64(0x01||pub)`."""
    body, _, sigs = note.partition("\n\n")
    name, key_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 1 and _h(name.encode() + b"\n" + raw)[:4].hex() == key_hex
    for line in sigs.splitlines():
        dash, signer, blob_b64 = line.split(" ")
        blob = base64.b64decode(blob_b64)
        if signer == name and blob[:4].hex() == key_hex:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], (body + "\n").encode())
            origin, size, root = body.split("\n")
            return int(size), base64.b64decode(root)
    raise AssertionError("no signature by that key")


def sealed(services: Services, invoices: int = 12) -> None:
    for _ in range(invoices):
        r = services.ledger.issue_invoice(SELLER, a_draft(), by())
        services.ledger.change_invoice(SELLER, r.invoice_id, SubmitRequest(channel="erp"), by())
    services.bring_up_to_date("seal")


def rows(services: Services) -> Iterator[object]:
    position = -(2**62)  # every row, whatever position someone gave it
    while batch := services.ledger.event_log.select_rows(position, 100):
        yield from batch
        position = batch[-1].position


def test_every_event_is_sealed_and_the_checkpoint_verifies_independently(
    services: Services,
) -> None:
    sealed(services)
    checkpoint = services.merkle.checkpoint_now()
    assert checkpoint is not None and checkpoint["tree_size"] == 24
    (key,) = services.merkle.signer.public_keys()
    size, root = independent_note_check(checkpoint["note"], key.vkey)
    assert size == 24 and root.hex() == checkpoint["root_hash"]
    for position in (1, 7, 24):
        index, proof = services.merkle.inclusion(position, size)
        leaf = bytes.fromhex(services.merkle.leaf(position)["leaf_hash"])  # type: ignore[index]
        assert independent_inclusion(index, size, leaf, proof, root)
        assert not independent_inclusion(index, size, _h(b"forged"), proof, root)
    report = services.merkle.verify(rows(services))  # type: ignore[arg-type]
    assert report.ok and report.leaves == 24 and report.checkpoint_size == 24


def test_checkpoints_are_signed_as_the_log_grows_and_stay_consistent(services: Services) -> None:
    seal = services.workers["seal"].projection
    seal.every = 10  # type: ignore[attr-defined]
    sealed(services, 5)
    sealed(services, 8)
    sizes = []
    with services.engine.connect() as conn:
        sizes = [
            r[0] for r in conn.execute(text("SELECT tree_size FROM checkpoints ORDER BY tree_size"))
        ]
    assert sizes and all(b - a >= 10 for a, b in zip(sizes, sizes[1:], strict=False))
    from domain.evidence import merkle

    first, second = services.merkle.checkpoint(sizes[0]), services.merkle.checkpoint(sizes[-1])
    proof = services.merkle.consistency(sizes[0], sizes[-1])
    assert merkle.verify_consistency(
        sizes[0],
        sizes[-1],
        bytes.fromhex(first["root_hash"]),  # type: ignore[index]
        bytes.fromhex(second["root_hash"]),
        proof,
    )  # type: ignore[index]
    old_key = services.merkle.signer.public_keys()[0]
    services.merkle.signer.rotate()
    sealed(services, 1)
    latest = services.merkle.checkpoint_now()
    assert latest is not None and latest["key_name"] != old_key.name
    assert len(services.merkle.signer.public_keys()) == 2
    assert services.merkle.verify(rows(services)).ok  # type: ignore[arg-type]


def _attack(services: Services, statements: list[str]) -> None:
    """Tamper as someone with database access would: switch the guard off first."""
    pg = services.settings.is_postgres
    table = "ledger_events" if pg else "stored_events"
    with services.write_engine.begin() as conn:
        if pg:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER stored_events_no_update"))
            conn.execute(text("DROP TRIGGER stored_events_no_delete"))
        for statement in statements:
            conn.execute(
                text(statement.format(table=table, pos="notification_id" if pg else "rowid"))
            )


TAMPERING = {
    "a changed state": (
        ["UPDATE {table} SET state = X'7b7d' WHERE {pos} = 5"],
        ["position 5: the stored event differs"],
    ),
    "a deleted row": (
        ["DELETE FROM {table} WHERE {pos} = 9"],
        ["position 9: a sealed event is missing"],
    ),
    "two swapped positions": (
        [
            "UPDATE {table} SET {pos} = -1 WHERE {pos} = 3",
            "UPDATE {table} SET {pos} = 3 WHERE {pos} = 4",
            "UPDATE {table} SET {pos} = 4 WHERE {pos} = -1",
        ],
        ["position 3: the stored event differs", "position 4: the stored event differs"],
    ),
    "an inserted row": (
        [
            "INSERT INTO {table} (originator_id, originator_version, topic, state, {pos}) "
            "SELECT originator_id, originator_version + 100, topic, state, 0 FROM {table} "
            "WHERE {pos} = 2"
        ],
        ["position 0: an event that was never sealed"],
    ),
}


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_ledger_verify_names_what_was_tampered_with(services: Services, attack: str) -> None:
    sealed(services, 6)
    services.merkle.checkpoint_now()
    assert fapiao(services.settings, "ledger", "verify").returncode == 0
    statements, expected = TAMPERING[attack]
    if services.settings.is_postgres:
        statements = [s.replace("X'7b7d'", "'\\x7b7d'::bytea") for s in statements]
    _attack(services, statements)
    report = services.merkle.verify(rows(services))  # type: ignore[arg-type]
    assert not report.ok
    for prefix in expected:
        assert any(f.startswith(prefix) for f in report.failures), report.failures
    cli = fapiao(services.settings, "ledger", "verify")
    assert cli.returncode == 1 and expected[0] in cli.stderr


def test_a_signing_key_from_the_environment_signs_and_is_published(services: Services) -> None:
    from infrastructure.bootstrap import build_services

    seed = hashlib.sha256(b"test seed").hexdigest()
    from infrastructure.settings import Settings

    settings = Settings(**{**services.settings.model_dump(), "signing_key": seed})
    other = build_services(settings)
    try:
        sealed(other, 2)
        checkpoint = other.merkle.checkpoint_now()
        assert checkpoint is not None and checkpoint["key_name"].endswith("/env")
        env_key = next(k for k in other.merkle.signer.public_keys() if k.name.endswith("/env"))
        assert independent_note_check(checkpoint["note"], env_key.vkey)[0] == 4
    finally:
        other.close()
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="64 hex digits"):
        Settings(signing_key="not-a-key")
