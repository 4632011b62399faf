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
    NoteSignature,
    key_id,
    signed_note,
    verifier_key,
)


@dataclass(frozen=True)
class PublicKey:
    name: str
    key_id: str
    public_key: bytes
    created_at: datetime

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
        """Add a new signing key (named after the origin and the time); it signs from now."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.keys_dir / f"{stamp}.ed25519"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(32).hex())
        return self._public(path)

    def _name(self, path: Path) -> str:
        return f"{self.origin}/{path.stem}"

    def _public(self, path: Path) -> PublicKey:
        raw = _raw_public(self._load(path))
        return PublicKey(
            self._name(path),
            key_id(self._name(path), raw).hex(),
            raw,
            datetime.fromtimestamp(path.stat().st_mtime, UTC),
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
