"""Ed25519 signing keys for checkpoints: kept as files, the newest signs, all are published.

A key file `<name>.ed25519` holds the 32-byte seed in hex. Rotation adds a new file; older
public keys stay published so old checkpoints still verify. Outside development a key must be
provided (FAPIAO_KEYS_DIR); in development one is created on first use.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from domain.evidence.checkpoint import (
    Checkpoint,
    KeyRotation,
    NoteFormatError,
    NoteSignature,
    VerifierKey,
    key_id,
    parse_rotation,
    parse_signed_note,
    parse_verifier_key,
    signed_note,
    verifier_key,
)


@dataclass(frozen=True)
class PublicKey:
    name: str
    key_id: str
    public_key: bytes
    created_at: datetime
    rotation: str | None = None  # the statement, signed by the key before it, naming this one

    @property
    def vkey(self) -> str:
        return verifier_key(self.name, self.public_key)

    def pem(self) -> str:
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SigningKeyMissingError(Exception):
    """No signing key is configured outside development."""


class CheckpointSigner:
    def __init__(
        self,
        keys_dir: Path,
        origin: str,
        create_if_missing: bool,
        env_seed: str | None = None,
        env_name: str = "env",
    ) -> None:
        self.keys_dir, self.origin, self.create = keys_dir, origin, create_if_missing
        # A key from the environment (hex seed) signs; key files stay published.
        self.env_key = (
            Ed25519PrivateKey.from_private_bytes(bytes.fromhex(env_seed)) if env_seed else None
        )
        self.env_name = f"{origin}/{env_name}"

    def _files(self) -> list[Path]:
        return sorted(self.keys_dir.glob("*.ed25519")) if self.keys_dir.is_dir() else []

    def _load(self, path: Path) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))

    def rotate(self) -> PublicKey:
        """Add a new signing key (named after the origin and the time); it signs from now. The
        outgoing key signs a statement naming it (`<stamp>.rotation`, a signed note beside the
        key file), so whoever trusts the old key can come to trust the new one."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        files = self._files()
        now = datetime.now(UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S%f")
        path = self.keys_dir / f"{stamp}.ed25519"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(32).hex())
        new = self._public(path)
        if files:
            old_name, old_key = self._name(files[-1]), self._load(files[-1])
            old_raw = _raw_public(old_key)
            text = KeyRotation(
                self.origin, verifier_key(old_name, old_raw), new.vkey, int(now.timestamp())
            ).body()
            sig = NoteSignature(old_name, key_id(old_name, old_raw), old_key.sign(text.encode()))
            path.with_suffix(".rotation").write_text(signed_note(text, [sig]))
        return self._public(path)

    def _name(self, path: Path) -> str:
        return f"{self.origin}/{path.stem}"

    def _public(self, path: Path) -> PublicKey:
        raw = _raw_public(self._load(path))
        rotation = path.with_suffix(".rotation")
        return PublicKey(
            self._name(path),
            key_id(self._name(path), raw).hex(),
            raw,
            datetime.fromtimestamp(path.stat().st_mtime, UTC),
            rotation.read_text() if rotation.is_file() else None,
        )

    def current(self) -> tuple[str, Ed25519PrivateKey]:
        if self.env_key is not None:
            return self.env_name, self.env_key
        files = self._files()
        if not files:
            if not self.create:
                raise SigningKeyMissingError(
                    f"no checkpoint signing key in {self.keys_dir}; run `fapiao ledger rotate-key`"
                )
            self.rotate()
            files = self._files()
        return self._name(files[-1]), self._load(files[-1])

    def public_keys(self) -> list[PublicKey]:
        keys = [self._public(p) for p in self._files()]
        if self.env_key is not None:
            raw = _raw_public(self.env_key)
            keys.append(
                PublicKey(self.env_name, key_id(self.env_name, raw).hex(), raw, datetime.now(UTC))
            )
        return keys

    def sign(self, checkpoint: Checkpoint) -> str:
        return self.sign_text(checkpoint.body())

    def sign_text(self, text: str, key_name: str | None = None) -> str:
        """A signed note over `text`, by the key named `key_name` if this log still holds it
        (so a re-made note is byte-identical: Ed25519 is deterministic), else the current key."""
        name, key = self.current()
        if key_name is not None and key_name != name:
            held = self._held(key_name)
            if held is not None:
                name, key = key_name, held
        signature = key.sign(text.encode())
        return signed_note(text, [NoteSignature(name, key_id(name, _raw_public(key)), signature)])

    def _held(self, key_name: str) -> Ed25519PrivateKey | None:
        if self.env_key is not None and key_name == self.env_name:
            return self.env_key
        for path in self._files():
            if self._name(path) == key_name:
                return self._load(path)
        return None


def verify_note_signature(text: str, sig: NoteSignature, public_key: bytes) -> bool:
    """Does `sig` (by the key `public_key`) sign the note text `text`?"""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig.signature, text.encode())
    except (InvalidSignature, ValueError):
        return False
    return key_id(sig.key_name, public_key) == sig.key_id


def follow_rotations(trusted: list[VerifierKey], statements: list[str]) -> list[VerifierKey]:
    """The keys you trust, plus each key a rotation statement names whose outgoing key you
    trust (directly or through earlier statements) and whose signature verifies. ValueError
    for a statement that does not parse or whose signature does not verify."""
    keys = list(trusted)
    pending = []
    for n, text in enumerate(statements, start=1):
        try:
            body, sigs = parse_signed_note(text)
            pending.append((n, parse_rotation(body), body, sigs))
        except NoteFormatError as e:
            raise ValueError(f"rotation statement {n}: {e}") from None
    progress = True
    while pending and progress:
        progress = False
        for item in list(pending):
            n, rotation, body, sigs = item
            try:
                old, new = (
                    parse_verifier_key(rotation.old_vkey),
                    parse_verifier_key(rotation.new_vkey),
                )
            except NoteFormatError as e:
                raise ValueError(f"rotation statement {n}: {e}") from None
            signed = [s for s in sigs if s.key_name == old.name and s.key_id == old.key_id]
            if not signed or not verify_note_signature(body, signed[0], old.public_key):
                raise ValueError(f"rotation statement {n}: not signed by the key it names as old")
            if any(k.public_key == old.public_key and k.name == old.name for k in keys):
                if not any(k.public_key == new.public_key for k in keys):
                    keys.append(new)
                pending.remove(item)
                progress = True
    return keys
