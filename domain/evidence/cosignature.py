"""Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 cosignature/v1) and the body of a
c2sp.org/tlog-witness add-checkpoint request.

A cosignature is a note signature line by the witness's key, with key id
SHA-256(name || "\\n" || 0x04 || public key)[:4]; its signature bytes are an 8-byte big-endian
POSIX timestamp followed by an Ed25519 signature over

    cosignature/v1\\n
    time <timestamp>\\n
    <the checkpoint's note body, with its final newline>
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from domain.evidence.checkpoint import (
    NoteFormatError,
    NoteSignature,
    _b64,
    _is_count,
    check_key_name,
    split_vkey,
)

COSIGNATURE_V1 = b"\x04"
MAX_PROOF_LINES = 63


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + COSIGNATURE_V1 + public_key).digest()[:4]


def cosigner_vkey(name: str, public_key: bytes) -> str:
    """The witness's verifier key: name+hex key id+base64(0x04 || public key)."""
    check_key_name(name)
    blob = base64.b64encode(COSIGNATURE_V1 + public_key).decode()
    return f"{name}+{cosigner_key_id(name, public_key).hex()}+{blob}"


@dataclass(frozen=True)
class CosignerKey:
    name: str
    key_id: bytes
    public_key: bytes

    @property
    def vkey(self) -> str:
        return cosigner_vkey(self.name, self.public_key)


def parse_cosigner_vkey(text: str) -> CosignerKey:
    """A witness verifier key (type 0x04), its key id checked against the key."""
    return CosignerKey(
        *split_vkey(
            text, "witness", "name+keyid+base64(0x04 || key)", COSIGNATURE_V1, cosigner_key_id
        )
    )


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What the witness's Ed25519 key signs."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def split_cosignature(sig: NoteSignature) -> tuple[int, bytes]:
    """(timestamp, Ed25519 signature) of a cosignature line's signature bytes."""
    if len(sig.signature) != 8 + 64:
        raise NoteFormatError(f"cosignature of {sig.key_name!r}: not 8 + 64 bytes")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp >= 2**63:
        raise NoteFormatError(f"cosignature of {sig.key_name!r}: timestamp out of range")
    return timestamp, sig.signature[8:]


def add_checkpoint_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    """`old <size>`, one base64 hash per line, an empty line, the signed note."""
    if len(proof) > MAX_PROOF_LINES:
        raise NoteFormatError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("".join(f"{line}\n" for line in lines) + "\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, signed note) of an add-checkpoint request body."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise NoteFormatError("the request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise NoteFormatError("no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0].split(" ")
    if len(first) != 2 or first[0] != "old" or not _is_count(first[1]):
        raise NoteFormatError("the first line is `old <size>`")
    proof = [_b64(line, "proof hash") for line in lines[1:]]
    if len(proof) > MAX_PROOF_LINES or any(len(h) != 32 for h in proof):
        raise NoteFormatError(f"at most {MAX_PROOF_LINES} proof lines of 32-byte hashes")
    return int(first[1]), proof, note
