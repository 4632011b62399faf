"""Ed25519 cosignature/v1 (c2sp.org/tlog-cosignature): making one (the witness) and checking
one (the log, the verifier). The byte formats are in domain/evidence/cosignature.py."""

from __future__ import annotations

import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from domain.evidence.checkpoint import NoteFormatError, NoteSignature
from domain.evidence.cosignature import (
    CosignerKey,
    cosigned_message,
    cosigner_key_id,
    split_cosignature,
)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def cosign(
    key: Ed25519PrivateKey, name: str, body: str, timestamp: int | None = None
) -> NoteSignature:
    """The witness `name`'s cosignature line over the checkpoint body, timestamped now."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = key.sign(cosigned_message(body, stamp))
    return NoteSignature(
        name, cosigner_key_id(name, raw_public(key)), stamp.to_bytes(8, "big") + signature
    )


def verify_cosignature(sig: NoteSignature, key: CosignerKey, body: str) -> int | None:
    """The cosignature's timestamp if `sig` is `key`'s valid cosignature of `body`, else None."""
    if sig.key_name != key.name or sig.key_id != key.key_id:
        return None
    try:
        timestamp, signature = split_cosignature(sig)
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(
            signature, cosigned_message(body, timestamp)
        )
    except (NoteFormatError, InvalidSignature, ValueError):
        return None
    return timestamp
