"""Checkpoints in the C2SP tlog-checkpoint / signed-note text format.

Body: the log's origin, the tree size and the base64 root hash, one per line. Signature lines
follow a blank line: `— <key name> <base64(4-byte key id || signature)>`. For Ed25519 the key
id is the first 4 bytes of SHA-256(key name || "\\n" || 0x01 || public key). Any
implementation of these formats can check our checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

ED25519 = b"\x01"
DASH = "\u2014"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


@dataclass(frozen=True)
class NoteSignature:
    key_name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{DASH} {self.key_name} {blob}\n"


def key_id(key_name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(key_name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def verifier_key(key_name: str, public_key: bytes) -> str:
    """The note verifier key string: name+hex key id+base64(type || public key)."""
    return (
        f"{key_name}+{key_id(key_name, public_key).hex()}+"
        f"{base64.b64encode(ED25519 + public_key).decode()}"
    )


def note(checkpoint: Checkpoint, signatures: list[NoteSignature]) -> str:
    return checkpoint.body() + "\n" + "".join(s.line() for s in signatures)


class NoteFormatError(ValueError):
    """The text is not a checkpoint note."""


def parse_note(text: str) -> tuple[Checkpoint, list[NoteSignature]]:
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise NoteFormatError("no blank line between the checkpoint and its signatures")
    lines = body.split("\n")
    if len(lines) < 3:
        raise NoteFormatError("a checkpoint has an origin, a size and a root hash")
    try:
        checkpoint = Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True))
    except ValueError as e:
        raise NoteFormatError(f"bad checkpoint body: {e}") from None
    signatures = []
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteFormatError(f"bad signature line {line!r}")
        blob = base64.b64decode(parts[2])
        signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    return checkpoint, signatures
