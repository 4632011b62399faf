"""The restore drill on both stores: back up a live ledger, restore it elsewhere (a new SQLite
file; a PostgreSQL cluster of the test's own), and every event and checkpoint verifies. A
backup with one byte changed is refused; one re-sealed by someone who altered an event fails
verification; a non-empty target is refused."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import uuid
from pathlib import Path

import pytest

from application.invoices.lifecycle import SubmitRequest
from infrastructure.bootstrap import Services, build_services
from infrastructure.evidence.ledger_backup import (
    KEYS,
    MANIFEST,
    TRAILER_LEN,
    TRAILER_PREFIX,
    BackupError,
    create_backup,
    restore_backup,
    target_settings,
    verify_backup,
)
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, by
from tests.conftest import PG_ADMIN_URL
from tests.integration.test_attachments import PDF
from tests.pg_cluster import PrivateCluster
from tests.test_cli import fapiao


def a_live_ledger(services: Services) -> int:
    """Invoices, an attachment, a checkpoint, then more events after it."""
    for _ in range(6):
        r = services.ledger.issue_invoice(SELLER, a_draft(), by())
        services.ledger.change_invoice(SELLER, r.invoice_id, SubmitRequest(channel="erp"), by())
    services.attachments.put(io.BytesIO(PDF), "发票.pdf")
    services.bring_up_to_date("seal")
    services.merkle.checkpoint_now()
    for _ in range(3):
        services.ledger.issue_invoice(SELLER, a_draft(), by())
    return int(services.ledger.recorder.max_notification_id() or 0)


@pytest.fixture
def elsewhere(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """An empty database of the other side of the drill, on the same kind of store."""
    if not settings.is_postgres:
        return target_settings(f"sqlite:///{tmp_path / 'elsewhere' / 'ledger.db'}", settings)
    cluster: PrivateCluster = request.getfixturevalue("private_pg")
    name = f"restored_{uuid.uuid4().hex[:8]}"
    cluster.execute(f'CREATE DATABASE "{name}"')
    return target_settings(cluster.url(name), settings)


def test_the_restore_drill(services: Services, elsewhere: Settings, tmp_path: Path) -> None:
    events = a_live_ledger(services)
    file = tmp_path / "ledger.fapiao"
    made = create_backup(services, file, "cli:ops")
    assert (made.events, made.checkpoint_size, made.attachments) == (events, events, 1)
    services.ledger.issue_invoice(SELLER, a_draft(), by())  # after the backup: not in it
    restored = restore_backup(file, elsewhere, tmp_path / "elsewhere-data")
    assert restored.ok, restored.failures
    assert (restored.events, restored.backup_checkpoint) == (events, events)
    assert restored.checkpoints >= 1 and restored.attachments == 1
    again = build_services(elsewhere.model_copy(update={"data_dir": tmp_path / "elsewhere-data"}))
    try:
        assert again.ledger.recorder.max_notification_id() == events
        assert again.merkle.checkpoint(events) is not None  # the backup's checkpoint is kept
        sha = hashlib.sha256(PDF).hexdigest()
        assert again.attachments.read(sha) == PDF
    finally:
        again.close()


def test_verify_restores_into_a_scratch_database_and_drops_it(
    services: Services, tmp_path: Path
) -> None:
    a_live_ledger(services)
    file = tmp_path / "ledger.fapiao"
    create_backup(services, file, "cli:ops")
    scratch = Settings(database_url=PG_ADMIN_URL) if services.settings.is_postgres else None
    report = verify_backup(file, scratch)
    assert report.ok, report.failures
    args = ["backup", "verify", str(file)]
    if scratch is not None:
        args += ["--scratch-url", PG_ADMIN_URL]
    r = fapiao(services.settings, *args)
    assert r.returncode == 0, r.stderr
    assert "OK: verify" in r.stdout and "events verify" in r.stdout


def flipped(file: Path, offset: int, out: Path) -> Path:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    out.write_bytes(bytes(data))
    return out


def offsets(file: Path) -> dict[str, int]:
    """Where to change one byte: inside the database, a tar header, the manifest, the tar's
    zero padding, and the trailer."""
    with tarfile.open(file) as tar:
        members = {m.name: m for m in tar.getmembers()}
    size = file.stat().st_size
    database = next(n for n in members if n in ("ledger.db", "database.dump"))
    return {
        "database": members[database].offset_data + 100,
        "tar header": members[KEYS].offset + 10,
        "manifest": members[MANIFEST].offset_data + 5,
        "padding": size - TRAILER_LEN - 10,
        "trailer": size - 5,
    }


def test_a_backup_with_one_byte_changed_is_refused(
    services: Services, elsewhere: Settings, tmp_path: Path
) -> None:
    a_live_ledger(services)
    file = tmp_path / "ledger.fapiao"
    create_backup(services, file, "cli:ops")
    for where, offset in offsets(file).items():
        bad = flipped(file, offset, tmp_path / f"bad-{where.replace(' ', '-')}.fapiao")
        with pytest.raises(BackupError, match="changed|not a fapiao backup"):
            restore_backup(bad, elsewhere, tmp_path / "nowhere")
        r = fapiao(services.settings, "backup", "verify", str(bad))
        assert r.returncode == 2 and r.stderr.startswith("error: "), (where, r.stderr)
    # Refused before anything was written: the target is still empty and restorable.
    assert restore_backup(file, elsewhere, tmp_path / "data").ok


def reseal(file: Path, out: Path, change: dict[str, bytes]) -> Path:
    """What an attacker with the file can do: replace parts, rebuild the manifest hashes and
    the trailer. Only the signed checkpoint is beyond them."""
    with tarfile.open(file) as tar:
        parts = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    parts.update(change)
    manifest = json.loads(parts[MANIFEST])
    for part in manifest["parts"]:
        body = parts[part["name"]]
        part["sha256"], part["bytes"] = hashlib.sha256(body).hexdigest(), len(body)
    parts[MANIFEST] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, body in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    out.write_bytes(payload + TRAILER_PREFIX + digest + b"\n")
    return out


def test_an_altered_event_in_a_resealed_backup_fails_verification(
    sqlite_services: Services, tmp_path: Path
) -> None:
    a_live_ledger(sqlite_services)
    file = tmp_path / "ledger.fapiao"
    create_backup(sqlite_services, file, "cli:ops")
    with tarfile.open(file) as tar:
        db = tar.extractfile("ledger.db").read()  # type: ignore[union-attr]
    copy = tmp_path / "copy.db"
    copy.write_bytes(db)
    conn = sqlite3.connect(copy)
    try:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
        for (name,) in triggers:  # the append-only guard, as an attacker would
            conn.execute(f'DROP TRIGGER "{name}"')
        changed = conn.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), '1130.00', "
            "'9130.00') AS BLOB) WHERE rowid = 1"
        )
        assert changed.rowcount == 1
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    forged = reseal(file, tmp_path / "forged.fapiao", {"ledger.db": copy.read_bytes()})
    target = target_settings(f"sqlite:///{tmp_path / 'r' / 'ledger.db'}", sqlite_services.settings)
    report = restore_backup(forged, target, tmp_path / "r")
    assert not report.ok
    assert "the restored events do not give the backup checkpoint's root" in report.failures
    r = fapiao(sqlite_services.settings, "backup", "verify", str(forged))
    assert r.returncode == 1 and "FAIL" in r.stderr and "did NOT verify" in r.stderr


def test_a_forged_key_in_a_resealed_backup_does_not_verify(
    sqlite_services: Services, tmp_path: Path
) -> None:
    a_live_ledger(sqlite_services)
    file = tmp_path / "ledger.fapiao"
    create_backup(sqlite_services, file, "cli:ops")
    other = build_services(
        sqlite_services.settings.model_copy(update={"keys_dir": tmp_path / "other-keys"})
    )
    try:
        forged_keys = "".join(k.vkey + "\n" for k in [other.merkle.signer.rotate()]).encode()
    finally:
        other.close()
    forged = reseal(file, tmp_path / "forged.fapiao", {KEYS: forged_keys})
    target = target_settings(f"sqlite:///{tmp_path / 'r' / 'ledger.db'}", sqlite_services.settings)
    report = restore_backup(forged, target, tmp_path / "r")
    assert "no key in the backup verifies the backup's checkpoint" in report.failures


@pytest.fixture
def sqlite_services(sqlite_settings: Settings) -> object:
    svc = build_services(sqlite_settings)
    yield svc
    svc.close()


def test_restore_refuses_a_database_that_is_not_empty(services: Services, tmp_path: Path) -> None:
    a_live_ledger(services)
    file = tmp_path / "ledger.fapiao"
    create_backup(services, file, "cli:ops")
    with pytest.raises(BackupError, match="not empty|exists"):
        restore_backup(file, services.settings, tmp_path / "data")
    r = fapiao(
        services.settings,
        "backup",
        "restore",
        str(file),
        "--to",
        services.settings.url.render_as_string(hide_password=False),
    )
    assert r.returncode == 2 and ("is not empty" in r.stderr or "exists" in r.stderr)
