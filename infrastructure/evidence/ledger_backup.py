"""Backups that prove themselves: `fapiao backup create|restore|verify`.

A backup file is a tar holding the database (PostgreSQL: `pg_dump` custom format taken in an
exported snapshot; SQLite: the online backup API), every attachment, the log's public keys (never
a private one) and `manifest.json` with the SHA-256 of each part, followed by one trailer line with
the SHA-256 of everything before it. A changed byte anywhere is refused before anything is read.

Creating one seals the log and signs a checkpoint of exactly the events in the backup, carried in
the manifest. Restoring goes into an empty database, migrates, and then checks, read-only: every
stored event against its sealed leaf and the latest checkpoint (the product's ledger
verification, `MerkleLog.verify`), every stored checkpoint's root (recomputed from the events) and
signature, and the backup's own checkpoint over all of its events, with the keys in the backup.
Success is reported only if all of it holds.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from application.evidence.leaf_encoding import leaf_hash, tenant_of_first_event
from application.invoices.ledger import InvoiceLedger
from application.ports import StoredEventRow
from domain.evidence import merkle
from domain.evidence.checkpoint import ED25519, Checkpoint, key_id, parse_note
from infrastructure.bootstrap import Services
from infrastructure.clock import SystemClock
from infrastructure.evidence.checkpoint_signer import PublicKey, verify_note_signature
from infrastructure.evidence.merkle_log import MerkleLog
from infrastructure.settings import Settings
from infrastructure.store import migrate as migrations
from infrastructure.store.database import create_engine_for

FORMAT = "fapiao-backup/1"
MANIFEST = "manifest.json"
KEYS = "keys/log.vkey"
TRAILER_PREFIX = b"\n#fapiao-backup sha256="
TRAILER_LEN = len(TRAILER_PREFIX) + 64 + 1
PG_EVENTS_TABLE = "ledger_events"  # the library's table for the application named "Ledger"
Progress = Callable[[str], None]


class BackupError(Exception):
    """The backup cannot be made, read or restored as asked (one line says why)."""


@dataclass
class BackupReport:
    path: Path
    store: str
    events: int
    checkpoint_size: int
    attachments: int
    keys: int
    bytes: int


@dataclass
class RestoreReport:
    """What a restore (or a verify into a scratch database) found."""

    store: str
    target: str
    events: int = 0
    checkpoints: int = 0
    attachments: int = 0
    backup_checkpoint: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# ---- the file: parts, manifest, trailer ------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_archive(out: Path, sources: dict[str, Path], manifest: dict[str, Any]) -> int:
    """Parts in manifest order, the manifest last, then the trailer; written beside `out` and
    moved into place, so a failed backup never leaves a half file under the name."""
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for part in manifest["parts"]:
                tar.add(sources[part["name"]], arcname=part["name"], recursive=False)
            body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(manifest_time(manifest)), 0o600
            tar.addfile(info, io.BytesIO(body))
        digest = _sha256_file(tmp)
        with tmp.open("ab") as f:
            f.write(TRAILER_PREFIX + digest.encode() + b"\n")
        os.chmod(tmp, 0o600)  # it holds every tenant's data
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def manifest_time(manifest: dict[str, Any]) -> float:
    return datetime.fromisoformat(manifest["created_at"]).timestamp()


def check_file(path: Path) -> None:
    """Refuse a file whose trailer is missing or whose bytes do not hash to it."""
    size = path.stat().st_size
    if size <= TRAILER_LEN:
        raise BackupError(f"{path}: not a fapiao backup (too short)")
    with path.open("rb") as f:
        f.seek(size - TRAILER_LEN)
        trailer = f.read()
        if not trailer.startswith(TRAILER_PREFIX) or not trailer.endswith(b"\n"):
            raise BackupError(f"{path}: not a fapiao backup, or its end was changed")
        expected = trailer[len(TRAILER_PREFIX) : -1].decode("ascii", "replace")
        f.seek(0)
        digest, left = hashlib.sha256(), size - TRAILER_LEN
        while left:
            chunk = f.read(min(left, 1 << 20))
            digest.update(chunk)
            left -= len(chunk)
    if digest.hexdigest() != expected:
        raise BackupError(f"{path}: the file was changed since it was written (SHA-256 differs)")


@dataclass
class OpenedBackup:
    manifest: dict[str, Any]
    folder: Path

    @property
    def store(self) -> str:
        return str(self.manifest["store"])

    def part(self, name: str) -> Path:
        return self.folder / name

    def keys(self) -> list[PublicKey]:
        return [parse_vkey(line) for line in self.part(KEYS).read_text().split()]


@contextmanager
def opened(path: Path) -> Iterator[OpenedBackup]:
    """The backup's parts in a private temporary folder, each checked against the manifest."""
    check_file(path)
    with tempfile.TemporaryDirectory(prefix="fapiao-restore-") as tmp:
        folder = Path(tmp)
        with tarfile.open(path, "r:") as tar:
            names = tar.getnames()
            if names.count(MANIFEST) != 1 or len(set(names)) != len(names):
                raise BackupError(f"{path}: not a fapiao backup (manifest missing or doubled)")
            tar.extractall(folder, filter="data")
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise BackupError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
        listed = {p["name"] for p in manifest["parts"]}
        if listed != set(names) - {MANIFEST}:
            raise BackupError(f"{path}: its parts differ from its manifest")
        for part in manifest["parts"]:
            if _sha256_file(folder / part["name"]) != part["sha256"]:
                raise BackupError(
                    f"{path}: {part['name']} differs from its SHA-256 in the manifest"
                )
        yield OpenedBackup(manifest, folder)


def parse_vkey(text: str) -> PublicKey:
    name, key_hex, blob = text.strip().split("+", 2)
    raw = base64.b64decode(blob)
    if raw[:1] != ED25519 or key_id(name, raw[1:]).hex() != key_hex:
        raise BackupError(f"key {name}: not an Ed25519 verifier key")
    return PublicKey(name, key_hex, raw[1:], datetime.now(UTC))


# ---- PostgreSQL tools ----------------------------------------------------------------------


def pg_tool(name: str, settings: Settings) -> str:
    """`pg_dump` and friends: FAPIAO_PG_BIN_DIR, else PATH, else the newest Debian install."""
    if settings.pg_bin_dir is not None:
        candidate = settings.pg_bin_dir / name
        if candidate.is_file():
            return str(candidate)
        raise BackupError(f"{name} is not in FAPIAO_PG_BIN_DIR ({settings.pg_bin_dir})")
    found = shutil.which(name)
    if found:
        return found
    installed = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3])
    )
    if installed:
        return str(installed[-1])
    raise BackupError(f"{name} not found: install the PostgreSQL client or set FAPIAO_PG_BIN_DIR")


def pg_conninfo(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment that carries it (so it never
    shows in a process listing)."""
    url = settings.url.set(drivername="postgresql")
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return url.set(password=None).render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BackupError(f"{Path(args[0]).name} failed: {last}")


# ---- create ----------------------------------------------------------------------------------


def create_backup(
    services: Services, out: Path, created_by: str, progress: Progress | None = None
) -> BackupReport:
    """Snapshot the database, seal and sign a checkpoint of exactly its events, and write the
    file with the attachments and the public keys."""
    say = progress or (lambda _text: None)
    settings = services.settings
    with tempfile.TemporaryDirectory(prefix="fapiao-backup-", dir=out.parent) as tmp:
        staging = Path(tmp)
        # Seal first, so the snapshot holds the leaves of (almost) every event it holds and the
        # restored log can keep the backup's checkpoint with its frontier.
        services.bring_up_to_date("seal")
        say("snapshot of the database")
        if settings.is_postgres:
            database, events, head = "database.dump", *_dump_postgres(settings, staging)
        else:
            database, events, head = "ledger.db", *_copy_sqlite(settings, staging / "ledger.db")
        say("sealing and signing a checkpoint of the backed-up events")
        services.bring_up_to_date("seal")
        checkpoint = services.merkle.checkpoint_at(events) if events else None
        sources = {database: staging / database, **_attachments(settings)}
        keys = services.merkle.signer.public_keys()
        (staging / "keys").mkdir()
        (staging / KEYS).write_text("".join(k.vkey + "\n" for k in keys), encoding="utf-8")
        sources[KEYS] = staging / KEYS
        for i, key in enumerate(keys):
            pem = staging / f"keys/{i:03d}.pem"
            pem.write_text(key.pem(), encoding="utf-8")
            sources[f"keys/{i:03d}.pem"] = pem
        say(f"writing {out.name}")
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": created_by,
            "store": "postgresql" if settings.is_postgres else "sqlite",
            "database": database,
            "schema_revision": migrations.current_revision(settings),
            "log_origin": settings.origin,
            "events": events,
            "head_position": head,
            "checkpoint": None
            if checkpoint is None
            else {
                "tree_size": int(checkpoint["tree_size"]),
                "root_hash": checkpoint["root_hash"],
                "note": checkpoint["note"],
            },
            "parts": [
                {"name": n, "sha256": _sha256_file(p), "bytes": p.stat().st_size}
                for n, p in sources.items()
            ],
        }
        size = _write_archive(out, sources, manifest)
    attachments = sum(n.startswith("attachments/") for n in sources)
    return BackupReport(out, manifest["store"], events, events, attachments, len(keys), size)


def _dump_postgres(settings: Settings, staging: Path) -> tuple[int, int]:
    """pg_dump inside an exported snapshot, so the event count and head read in the same
    snapshot are exactly the dump's."""
    conninfo, env = pg_conninfo(settings)
    with psycopg.connect(settings.url.set(drivername="postgresql").render_as_string(False)) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        (snapshot,) = conn.execute("SELECT pg_export_snapshot()").fetchone()  # type: ignore[misc]
        counted = conn.execute(
            sql.SQL("SELECT count(*), coalesce(max(notification_id), 0) FROM {}").format(
                sql.Identifier(PG_EVENTS_TABLE)
            )
        ).fetchone()
        assert counted is not None
        _run(
            [
                pg_tool("pg_dump", settings),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot}",
                f"--file={staging / 'database.dump'}",
                f"--dbname={conninfo}",
            ],
            env,
        )
        conn.rollback()
    return int(counted[0]), int(counted[1])


def _copy_sqlite(settings: Settings, dest: Path) -> tuple[int, int]:
    """SQLite's online backup API: a consistent copy while the service keeps writing."""
    source = sqlite3.connect(settings.sqlite_path)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        events, head = target.execute(
            "SELECT count(*), coalesce(max(rowid), 0) FROM stored_events"
        ).fetchone()
    finally:
        target.close()
        source.close()
    return int(events), int(head)


def _attachments_dir(settings: Settings) -> Path:
    return settings.attachments_dir or settings.data_dir / "attachments"


def _attachments(settings: Settings) -> dict[str, Path]:
    """Every stored attachment, by its name in the backup (attachments/<sha256>)."""
    root = _attachments_dir(settings)
    found = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file() and not path.name.startswith("."):  # not an upload in progress
            found[f"attachments/{path.name}"] = path
    return found


# ---- restore and verify ----------------------------------------------------------------------


def restore_backup(
    path: Path, target: Settings, data_dir: Path, progress: Progress | None = None
) -> RestoreReport:
    """Into an empty database: restore, migrate, put the attachments and public keys under
    `data_dir`, then verify every event and checkpoint."""
    say = progress or (lambda _text: None)
    with opened(path) as backup:
        report = RestoreReport(backup.store, target.describe())
        _require_empty(target)
        say(f"restoring into {target.describe()}")
        if backup.store == "postgresql":
            if not target.is_postgres:
                raise BackupError(
                    "a PostgreSQL backup restores into PostgreSQL (--to postgresql://)"
                )
            conninfo, env = pg_conninfo(target)
            _run(
                [
                    pg_tool("pg_restore", target),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    f"--dbname={conninfo}",
                    str(backup.part(backup.manifest["database"])),
                ],
                env,
            )
        else:
            if target.is_postgres:
                raise BackupError("a SQLite backup restores into SQLite (--to sqlite:///path)")
            target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(backup.part(backup.manifest["database"]), target.sqlite_path)
        say("migrating")
        migrations.upgrade(target)
        attachments = data_dir / "attachments"
        for part in backup.manifest["parts"]:
            name = part["name"]
            if name.startswith("attachments/"):
                sha = name.split("/", 1)[1]
                final = attachments / sha[:2] / sha[2:4] / sha
                final.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(backup.part(name), final)
                report.attachments += 1
        published = data_dir / "restored-keys"
        published.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backup.part(KEYS), published / "log.vkey")
        say("verifying every event and checkpoint")
        verify_restored(target, backup, attachments, report)
        if report.ok:
            _keep_backup_checkpoint(target, backup)
    return report


def _keep_backup_checkpoint(target: Settings, backup: OpenedBackup) -> None:
    """The restored log keeps the checkpoint that vouches for it (signed after the snapshot),
    with its frontier, so `fapiao ledger verify` checks it like every other."""
    made = backup.manifest.get("checkpoint")
    if made is None:
        return
    engine = create_engine_for(target, immediate=True)
    try:
        log = MerkleLog(engine, engine, _KeyRing(backup.keys()))  # type: ignore[arg-type]
        log.adopt(made["note"], datetime.fromisoformat(backup.manifest["created_at"]))
    finally:
        engine.dispose()


def verify_backup(
    path: Path, scratch_server: Settings | None, progress: Progress | None = None
) -> RestoreReport:
    """Restore into a scratch database (dropped afterwards) and verify it there."""
    with opened(path) as backup:
        store = backup.store
    with tempfile.TemporaryDirectory(prefix="fapiao-verify-") as tmp:
        if store == "sqlite":
            scratch = Settings(database_url=f"sqlite:///{Path(tmp) / 'ledger.db'}", data_dir=tmp)
            return restore_backup(path, scratch, Path(tmp), progress)
        if scratch_server is None or not scratch_server.is_postgres:
            raise BackupError("verifying a PostgreSQL backup needs a server: --scratch-url")
        name = f"fapiao_verify_{secrets.token_hex(6)}"
        admin, env = pg_conninfo(scratch_server)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = scratch_server.url.set(database=name).render_as_string(hide_password=False)
            scratch = Settings(database_url=url, data_dir=tmp, pg_bin_dir=scratch_server.pg_bin_dir)
            return restore_backup(path, scratch, Path(tmp), progress)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _require_empty(target: Settings) -> None:
    if target.is_postgres:
        try:
            with psycopg.connect(
                target.url.set(drivername="postgresql").render_as_string(False)
            ) as c:
                row = c.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                    "('pg_catalog', 'information_schema')"
                ).fetchone()
        except psycopg.OperationalError as e:
            raise BackupError(f"cannot reach {target.describe()}: {str(e).strip()}") from None
        if row and row[0]:
            raise BackupError(f"{target.describe()} is not empty: restore into an empty database")
    elif target.sqlite_path.exists() and target.sqlite_path.stat().st_size > 0:
        raise BackupError(f"{target.sqlite_path} exists: restore into a new file")


class _KeyRing:
    """The public keys a backup carries, in the shape `MerkleLog` reads them (never signs)."""

    def __init__(self, keys: list[PublicKey]) -> None:
        self.keys = keys

    def public_keys(self) -> list[PublicKey]:
        return self.keys


def _rows(ledger: InvoiceLedger) -> Iterator[StoredEventRow]:
    position = -(2**62)  # every row, whatever position it was given
    while True:
        rows = ledger.event_log.select_rows(position, 5000)
        if not rows:
            return
        yield from rows
        position = rows[-1].position


def _signed_by(note: str, keys: dict[str, bytes]) -> tuple[Checkpoint, bool]:
    checkpoint, signatures = parse_note(note)
    ok = any(
        s.key_id.hex() in keys and verify_note_signature(checkpoint.body(), s, keys[s.key_id.hex()])
        for s in signatures
    )
    return checkpoint, ok


def verify_restored(
    target: Settings, backup: OpenedBackup, attachments: Path, report: RestoreReport
) -> None:
    """Read-only checks of a restored ledger; failures are added to `report`."""
    keys = backup.keys()
    by_id = {k.key_id: k.public_key for k in keys}
    ledger = InvoiceLedger(target.eventsourcing_env(), SystemClock())
    engine = create_engine_for(target)
    try:
        log = MerkleLog(engine, engine, _KeyRing(keys))  # type: ignore[arg-type]
        leaves: list[bytes] = []  # recomputed from the restored events themselves
        tenant_of: dict[str, str | None] = {}

        def counted() -> Iterator[StoredEventRow]:
            for row in _rows(ledger):
                stream = str(row.originator_id)
                if row.originator_version == 1:
                    tenant_of[stream] = tenant_of_first_event(row)
                leaves.append(leaf_hash(row, tenant_of.get(stream)))
                yield row

        # The product's ledger verification (`fapiao ledger verify`), read-only, with the
        # backup's keys: each event against its sealed leaf, both trees, and every stored
        # checkpoint (note, signature, roots, frontier, consistency with the one before).
        verified = log.verify(counted())
        report.failures += verified.failures
        report.events = len(leaves)
        report.checkpoints = verified.checkpoints
        _verify_backup_checkpoint(backup, leaves, by_id, report)
        for part in backup.manifest["parts"]:
            name = part["name"]
            if name.startswith("attachments/"):
                sha = name.split("/", 1)[1]
                if _sha256_file(attachments / sha[:2] / sha[2:4] / sha) != sha:
                    report.failures.append(f"attachment {sha}: its content has another SHA-256")
    finally:
        ledger.close()
        engine.dispose()


def _verify_backup_checkpoint(
    backup: OpenedBackup, leaves: list[bytes], keys: dict[str, bytes], report: RestoreReport
) -> None:
    """The checkpoint signed when the backup was made covers every event in it."""
    made = backup.manifest.get("checkpoint")
    if made is None:
        if leaves:
            report.failures.append("the backup carries no checkpoint of its events")
        return
    checkpoint, signed = _signed_by(made["note"], keys)
    report.backup_checkpoint = checkpoint.size
    if checkpoint.size != len(leaves) or backup.manifest["events"] != len(leaves):
        report.failures.append(
            f"the backup's checkpoint covers {checkpoint.size} events; {len(leaves)} were restored"
        )
    elif merkle.root(leaves) != checkpoint.root:
        report.failures.append("the restored events do not give the backup checkpoint's root")
    if not signed:
        report.failures.append("no key in the backup verifies the backup's checkpoint")


def target_settings(url: str, base: Settings) -> Settings:
    """Settings for the restore target: its URL, the rest as configured."""
    make_url(url)  # a clear error for a malformed URL before anything else
    return base.model_copy(update={"database_url": Settings(database_url=url).database_url})
