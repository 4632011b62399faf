"""The sealed log on both stores: leaves, signed checkpoints, proofs, and `ledger verify`
catching tampering done with the append-only guard disabled, as an attacker would.

Proofs and signatures are checked here with code written from the RFCs in this file, not with
the product's own verifier."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from api.http.app import create_app
from application.access import Principal, Role
from application.evidence.seal_guard import SealBrokenError
from application.invoices.lifecycle import SubmitRequest
from infrastructure.bootstrap import Services, build_services
from infrastructure.store.tables import seal_incidents
from tests.builders import OTHER_TENANT, SELLER, a_draft, by
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


def independent_signed_text(note: str, vkey: str) -> str:
    """The text of a C2SP signed note whose Ed25519 signature by `vkey` (the verifier key
    `name+keyid+base64(0x01||pub)`) verifies; AssertionError (or InvalidSignature) if none."""
    body, _, sigs = note.rpartition("\n\n")
    name, key_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 1 and _h(name.encode() + b"\n" + raw)[:4].hex() == key_hex
    for line in sigs.splitlines():
        dash, signer, blob_b64 = line.split(" ")
        blob = base64.b64decode(blob_b64)
        if signer == name and blob[:4].hex() == key_hex:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], (body + "\n").encode())
            return body + "\n"
    raise AssertionError("no signature by that key")


def independent_checkpoint(note: str, vkey: str) -> dict[str, object]:
    """Size, root and the stream-heads line (`fapiao-stream-heads/v1 <count> <b64 root>`)."""
    origin, size, root, *extensions = independent_signed_text(note, vkey).splitlines()
    heads = [e.split(" ") for e in extensions if e.startswith("fapiao-stream-heads/v1 ")]
    assert len(heads) == 1, extensions
    return {
        "origin": origin,
        "size": int(size),
        "root": base64.b64decode(root),
        "heads_count": int(heads[0][1]),
        "heads_root": base64.b64decode(heads[0][2]),
    }


def independent_note_check(note: str, vkey: str) -> tuple[int, bytes]:
    checkpoint = independent_checkpoint(note, vkey)
    return checkpoint["size"], checkpoint["root"]  # type: ignore[return-value]


def independent_root(leaves: list[bytes]) -> bytes:
    """MTH (RFC 9162 2.1.1) of leaf hashes, recursively, as the RFC defines it."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + independent_root(leaves[:k]) + independent_root(leaves[k:]))


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


# ---- the seal guards itself ------------------------------------------------------------------

SEAL_TABLES = {  # table -> a column an attacker would change
    "merkle_leaves": "leaf_hash",
    "merkle_frontier": "hash",
    "checkpoints": "note",
    "seal_incidents": "reason",
    "access_log": "subject",
}


def tamper(services: Services, table: str, statement: str, **params: object) -> None:
    """Change a seal table as someone with database access would: guard off first."""
    with services.write_engine.begin() as conn:
        if services.settings.is_postgres:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        conn.execute(text(statement), params)


def dump(services: Services) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, as stored (bytes included)."""
    out = {}
    with services.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            rows_ = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            out[table] = sorted((tuple(r) for r in rows_), key=repr)
    return out


def checkpoint_sizes(services: Services) -> list[int]:
    with services.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT tree_size FROM checkpoints ORDER BY 1"))]


def several_checkpoints(services: Services) -> list[int]:
    seal = services.workers["seal"].projection
    seal.every = 4  # type: ignore[attr-defined]
    for _ in range(3):
        sealed(services, 2)
    return checkpoint_sizes(services)


@pytest.mark.parametrize("table", sorted(SEAL_TABLES))
def test_the_seal_tables_refuse_update_and_delete(services: Services, table: str) -> None:
    several_checkpoints(services)
    auditor = Principal(SELLER, "k1", frozenset({Role.AUDITOR}))
    services.access_log.record(auditor, "history", "x", services.ledger.clock.now())
    services.access_log.list(SELLER, 10)  # the access log's projection catches up
    with services.write_engine.begin() as conn:
        conn.execute(
            seal_incidents.insert().values(
                incident_id=uuid.uuid4(), detected_at=datetime.now(UTC), tree_size=1, reason="drill"
            )
        )
    column = SEAL_TABLES[table]
    for statement in (f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"):
        with pytest.raises(DBAPIError, match="append-only"):
            with services.write_engine.begin() as conn:
                conn.execute(text(statement))
    with services.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0


def test_leaves_name_their_tenant_and_the_stream_heads_root_is_independently_recomputed(
    services: Services,
) -> None:
    sealed(services, 3)
    services.ledger.issue_invoice(OTHER_TENANT, a_draft(), by())
    services.bring_up_to_date("seal")
    checkpoint = services.merkle.checkpoint_now()
    assert checkpoint is not None
    (key,) = services.merkle.signer.public_keys()
    signed = independent_checkpoint(checkpoint["note"], key.vkey)
    heads: dict[str, tuple[int, int]] = {}  # stream -> (version, position), in first-seen order
    leaves = []
    for row in rows(services):
        leaf = {
            "position": row.position,  # type: ignore[attr-defined]
            "recorded_at": row.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # type: ignore[attr-defined]
            "state_sha256": hashlib.sha256(row.state).hexdigest(),  # type: ignore[attr-defined]
            "stream_id": str(row.originator_id),  # type: ignore[attr-defined]
            "stream_version": row.originator_version,  # type: ignore[attr-defined]
            "tenant": OTHER_TENANT if len(leaves) == 6 else SELLER,
            "topic": row.topic,  # type: ignore[attr-defined]
        }
        leaves.append(_h(b"\x00" + rfc8785.dumps(leaf)))
        heads[str(leaf["stream_id"])] = (int(leaf["stream_version"]), int(leaf["position"]))  # type: ignore[call-overload]
    assert signed["size"] == 7 and independent_root(leaves) == signed["root"]
    head_leaves = [
        _h(b"\x00" + rfc8785.dumps({"last_position": p, "last_version": v, "stream_id": sid}))
        for sid, (v, p) in heads.items()
    ]
    assert signed["heads_count"] == 4 and independent_root(head_leaves) == signed["heads_root"]
    assert [r["position"] for r in services.merkle.tenant_leaves(OTHER_TENANT, 0, 100)] == [7]


def test_ledger_verify_only_reads_and_counts_what_is_not_sealed_yet(services: Services) -> None:
    sealed(services, 2)
    services.merkle.checkpoint_now()
    services.ledger.issue_invoice(SELLER, a_draft(), by())  # not sealed
    before = dump(services)
    cli = fapiao(services.settings, "ledger", "verify")
    assert cli.returncode == 0, cli.stderr
    assert "4 sealed events, 1 not sealed yet" in cli.stdout
    assert dump(services) == before
    assert services.workers["seal"].position() == 4


def test_ledger_verify_checks_every_checkpoint_not_just_the_latest(services: Services) -> None:
    sizes = several_checkpoints(services)
    assert len(sizes) == 3
    old = services.merkle.checkpoint(sizes[0])
    assert old is not None
    lines = old["note"].split("\n")
    lines[2] = base64.b64encode(b"\x11" * 32).decode()  # another root, the old signature
    tamper(
        services,
        "checkpoints",
        "UPDATE checkpoints SET note = :note, root_hash = :root WHERE tree_size = :size",
        note="\n".join(lines),
        root=(b"\x11" * 32).hex(),
        size=sizes[0],
    )
    report = services.merkle.verify(rows(services))  # type: ignore[arg-type]
    assert f"checkpoint {sizes[0]}: no published key verifies its signature" in report.failures
    assert f"checkpoint {sizes[0]}: the sealed leaves do not give its root" in report.failures
    assert f"checkpoint {sizes[1]}: not consistent with checkpoint {sizes[0]}" in report.failures
    tamper(services, "checkpoints", "DELETE FROM checkpoints WHERE tree_size = :s", s=sizes[1])
    report = services.merkle.verify(rows(services))  # type: ignore[arg-type]
    assert f"merkle_frontier at {sizes[1]}: no checkpoint {sizes[1]} (deleted?)" in report.failures


def test_a_corrupted_frontier_and_an_edited_old_checkpoint_stop_the_log_signing(
    services: Services,
) -> None:
    sizes = several_checkpoints(services)
    latest, oldest = sizes[-1], sizes[0]
    old = services.merkle.checkpoint(oldest)
    assert old is not None
    with services.engine.connect() as conn:
        frontier_hash = conn.execute(
            text("SELECT hash FROM merkle_frontier WHERE tree_size = :s AND slot = 0"),
            {"s": latest},
        ).scalar_one()
    tamper(
        services,
        "merkle_frontier",
        "UPDATE merkle_frontier SET hash = :h WHERE tree_size = :s AND slot = 0",
        h="00" * 32,
        s=latest,
    )
    origin, size, *rest = old["note"].split("\n")
    tamper(
        services,
        "checkpoints",
        "UPDATE checkpoints SET note = :note WHERE tree_size = :s",
        note="\n".join([origin, str(int(size) + 1), *rest]),
        s=oldest,
    )
    sealed(services, 3)  # more than `every` new events: the sealer would sign now
    with services.engine.connect() as conn:
        reasons = [r[0] for r in conn.execute(text("SELECT reason FROM seal_incidents"))]
    assert checkpoint_sizes(services) == sizes  # refused: nothing new was signed
    assert reasons == [f"the stored frontier at checkpoint {latest} does not give its signed root"]
    with pytest.raises(SealBrokenError, match="frontier"):
        services.merkle.checkpoint_now()
    with TestClient(create_app(services=services)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["seal"]["status"] == "refusing to sign"
    before = dump(services)
    cli = fapiao(services.settings, "ledger", "verify")
    assert dump(services) == before  # verify only reads
    assert cli.returncode == 1
    assert f"merkle_frontier at {latest}: differs from the sealed leaves' frontier" in cli.stderr
    assert f"checkpoint {oldest}: its stored columns differ from its note" in cli.stderr
    assert "refusing to sign" in cli.stderr
    fresh = build_services(services.settings)  # a restarted sealer checks every checkpoint
    try:
        seal = fresh.workers["seal"].projection
        with fresh.write_engine.begin() as conn:
            seal._load(conn)  # type: ignore[attr-defined]
        assert "merkle_frontier" in seal._broken  # type: ignore[attr-defined]
    finally:
        fresh.close()
    # Repaired (as a restore from backup would): the operator's checkpoint proves again.
    tamper(
        services,
        "merkle_frontier",
        "UPDATE merkle_frontier SET hash = :h WHERE tree_size = :s AND slot = 0",
        h=frontier_hash,
        s=latest,
    )
    tamper(
        services,
        "checkpoints",
        "UPDATE checkpoints SET note = :note WHERE tree_size = :s",
        note=old["note"],
        s=oldest,
    )
    repaired = fapiao(services.settings, "ledger", "checkpoint")
    assert repaired.returncode == 0, repaired.stderr
    assert checkpoint_sizes(services)[-1] > latest
    assert services.merkle.health().refusing is False
    assert fapiao(services.settings, "ledger", "verify").returncode == 0


def test_the_seal_is_never_rebuilt(services: Services) -> None:
    sealed(services, 1)
    cli = fapiao(services.settings, "projections", "rebuild", "seal")
    assert cli.returncode == 2 and "append-only" in cli.stderr
    assert cli.stderr.strip().count("\n") == 0
    assert services.workers["seal"].position() == 2


def test_a_refusal_is_resolved_once_the_checks_pass_again(services: Services) -> None:
    sealed(services, 2)
    checkpoint = services.merkle.checkpoint_now()
    assert checkpoint is not None
    size, note = checkpoint["tree_size"], checkpoint["note"]
    tamper(
        services,
        "checkpoints",
        "UPDATE checkpoints SET key_name = 'someone/else' WHERE tree_size = :s",
        s=size,
    )
    with pytest.raises(SealBrokenError, match="no published key verifies"):
        services.merkle.checkpoint_now()  # what an export does: the stored checkpoint is checked
    assert services.merkle.health().refusing
    with pytest.raises(SealBrokenError):
        services.merkle.checkpoint_now()  # refused while the incident is open
    still = fapiao(services.settings, "ledger", "checkpoint")  # proves again: still broken
    assert still.returncode == 2 and "no published key verifies" in still.stderr
    tamper(
        services,
        "checkpoints",
        "UPDATE checkpoints SET key_name = :k WHERE tree_size = :s",
        k=checkpoint["key_name"],
        s=size,
    )
    repaired = fapiao(services.settings, "ledger", "checkpoint")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout == note  # nothing new to sign: the same checkpoint, checked
    assert not services.merkle.health().refusing
    with services.engine.connect() as conn:
        reasons = [
            r[0]
            for r in conn.execute(text("SELECT reason FROM seal_incidents ORDER BY detected_at"))
        ]
    assert len(reasons) == 2 and reasons[1].startswith("resolved: the checks pass again")
