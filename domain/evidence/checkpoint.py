"""Checkpoints in the C2SP tlog-checkpoint / signed-note text format.

A signed note is a text (UTF-8, each line ending in a newline), a blank line, then signature
lines `— <key name> <base64(4-byte key id || signature)>`. For Ed25519 the key id is the
first 4 bytes of SHA-256(key name || "\\n" || 0x01 || public key) and the signature covers the
text with its newlines. Verifiers ignore signature lines by keys they do not know (witness
cosignatures, later algorithms), so lines can be added to a note without changing it.

A checkpoint's text is the log's origin, the tree size and the base64 root hash, one per line,
then optional extension lines. Ours carries one: `fapiao-stream-heads/v1 <count> <base64 root>`,
the root of the tree of every stream's head at that size. Any implementation of these formats
can check our checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

ED25519 = b"\x01"
DASH = "\u2014"
HEADS_EXTENSION = "fapiao-stream-heads/v1"


MAX_KEY_NAME = 255
MAX_ORIGIN = 255


class NoteFormatError(ValueError):
    """The text is not a signed note, or not a checkpoint."""


def check_key_name(name: str) -> str:
    """A c2sp.org/signed-note key name: non-empty, printable, no whitespace and no `+`."""
    if not name:
        raise NoteFormatError("a key name must not be empty")
    if len(name) > MAX_KEY_NAME:
        raise NoteFormatError(f"a key name is at most {MAX_KEY_NAME} characters")
    if "+" in name or any(c.isspace() or not c.isprintable() for c in name):
        raise NoteFormatError(
            f"key name {name[:80]!r}: no whitespace, no '+' and no control characters"
        )
    return name


def _one_key(text: str) -> None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        raise NoteFormatError(
            f"{len(lines)} lines given, expected one key (a key is one line: give each "
            "key on its own, or a file of keys where one is accepted)"
        )


def check_origin(origin: str) -> str:
    """A checkpoint origin line: non-empty, printable (spaces allowed inside), bounded."""
    if not origin or origin != origin.strip():
        raise NoteFormatError("an origin must be non-empty, without leading or trailing spaces")
    if len(origin) > MAX_ORIGIN:
        raise NoteFormatError(f"an origin is at most {MAX_ORIGIN} characters")
    if not origin.isprintable():
        raise NoteFormatError(f"origin {origin[:80]!r}: printable characters only")
    return origin


@dataclass(frozen=True)
class StreamHeads:
    """The second tree a checkpoint commits to: one leaf per stream, its last event."""

    count: int
    root: bytes

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()

    def line(self) -> str:
        return f"{HEADS_EXTENSION} {self.count} {self.root_b64}"


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log's origin, tree size and root, and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in [*lines, *self.extensions])

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()

    def stream_heads(self) -> StreamHeads | None:
        for line in self.extensions:
            parts = line.split(" ")
            if parts[0] == HEADS_EXTENSION:
                if len(parts) != 3 or not _is_count(parts[1]):
                    raise NoteFormatError(f"bad extension line {line!r}")
                return StreamHeads(int(parts[1]), _b64(parts[2], "stream heads root"))
        return None


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: who (key name and 4-byte id) and the signature bytes."""

    key_name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{DASH} {self.key_name} {blob}\n"


def key_id(key_name: str, public_key: bytes) -> bytes:
    """The 4-byte Ed25519 key id of c2sp.org/signed-note."""
    return hashlib.sha256(key_name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def verifier_key(key_name: str, public_key: bytes) -> str:
    """The note verifier key string: name+hex key id+base64(type || public key)."""
    check_key_name(key_name)
    return (
        f"{key_name}+{key_id(key_name, public_key).hex()}+"
        f"{base64.b64encode(ED25519 + public_key).decode()}"
    )


@dataclass(frozen=True)
class VerifierKey:
    """A parsed verifier key string (Ed25519 only)."""

    name: str
    key_id: bytes
    public_key: bytes


def split_vkey(
    text: str, kind: str, shape: str, type_byte: bytes, id_of: Callable[[str, bytes], bytes]
) -> tuple[str, bytes, bytes]:
    """(name, key id, public key) of a signed-note verifier key `name+hexkeyid+base64(type ||
    key)`, its name, type, length and key id checked; `kind` and `shape` word the errors."""
    _one_key(text)
    parts = text.strip().split("+", 2)  # the base64 may hold "+" too
    if len(parts) != 3:
        raise NoteFormatError(f"a {kind} key is {shape}")
    name, hex_id, b64 = parts
    check_key_name(name)
    try:
        raw, wanted = _b64(b64, "key"), bytes.fromhex(hex_id)
    except ValueError as e:
        raise NoteFormatError(f"bad {kind} key: {e}") from None
    if len(raw) != 33 or raw[:1] != type_byte:
        raise NoteFormatError(
            "only Ed25519 verifier keys (type 0x01, 32 bytes) are supported"
            if type_byte == ED25519
            else f"a {kind} key is of type 0x{type_byte.hex()} (Ed25519 cosignature/v1), 32 bytes"
        )
    if id_of(name, raw[1:]) != wanted:
        raise NoteFormatError(f"{kind} key {name}: the key id does not match the key")
    return name, wanted, raw[1:]


def parse_verifier_key(text: str) -> VerifierKey:
    """`name+hexkeyid+base64(0x01 || key)`, its key id checked against the key."""
    return VerifierKey(
        *split_vkey(text, "verifier", "name+keyid+base64(0x01 || key)", ED25519, key_id)
    )


def note(checkpoint: Checkpoint, signatures: list[NoteSignature]) -> str:
    """The checkpoint as a signed note."""
    return signed_note(checkpoint.body(), signatures)


def signed_note(text: str, signatures: list[NoteSignature]) -> str:
    """Text, a blank line, the signature lines."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteFormatError("a note's text ends with a newline and has no blank line")
    return text + "\n" + "".join(s.line() for s in signatures)


def parse_signed_note(text: str) -> tuple[str, list[NoteSignature]]:
    """(the signed text with its final newline, the signature lines)."""
    body, sep, sigs = text.rpartition("\n\n")  # as c2sp.org/signed-note: the last blank line
    if not sep:
        raise NoteFormatError("no blank line between the text and its signatures")
    signatures = []
    for line in sigs.split("\n"):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteFormatError(f"bad signature line {line[:80]!r}")
        blob = _b64(parts[2], "signature")
        if len(blob) < 5:
            raise NoteFormatError(f"signature line of {parts[1]!r} is too short")
        signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    if not signatures:
        raise NoteFormatError("the note carries no signature")
    return body + "\n", signatures


def parse_checkpoint(body: str) -> Checkpoint:
    """A note's text as a checkpoint (strict: decimal size, 32-byte base64 root)."""
    lines = body.removesuffix("\n").split("\n")
    if len(lines) < 3:
        raise NoteFormatError("a checkpoint has an origin, a size and a root hash")
    origin, size, root_b64, *extensions = lines
    if not origin or not _is_count(size):
        raise NoteFormatError("a checkpoint starts with an origin and a decimal tree size")
    root = _b64(root_b64, "root hash")
    if len(root) != 32:
        raise NoteFormatError("the root hash is not 32 bytes")
    checkpoint = Checkpoint(origin, int(size), root, tuple(extensions))
    checkpoint.stream_heads()  # a malformed heads line fails here
    return checkpoint


def parse_note(text: str) -> tuple[Checkpoint, list[NoteSignature]]:
    """A signed checkpoint note: the checkpoint and its signature lines (unverified)."""
    body, signatures = parse_signed_note(text)
    return parse_checkpoint(body), signatures


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteFormatError(f"the {what} is not base64") from None


ROTATION_HEADER = "fapiao-key-rotation/v1"


@dataclass(frozen=True)
class KeyRotation:
    """A statement by the outgoing signing key naming the key that signs after it."""

    origin: str
    old_vkey: str
    new_vkey: str
    timestamp: int

    def body(self) -> str:
        lines = [
            ROTATION_HEADER,
            self.origin,
            f"old {self.old_vkey}",
            f"new {self.new_vkey}",
            f"time {self.timestamp}",
        ]
        return "".join(f"{line}\n" for line in lines)


def parse_rotation(body: str) -> KeyRotation:
    lines = body.removesuffix("\n").split("\n")
    if (
        len(lines) != 5
        or lines[0] != ROTATION_HEADER
        or not lines[2].startswith("old ")
        or not lines[3].startswith("new ")
        or not lines[4].startswith("time ")
        or not _is_count(lines[4][5:])
    ):
        raise NoteFormatError(f"not a {ROTATION_HEADER} statement")
    return KeyRotation(lines[1], lines[2][4:], lines[3][4:], int(lines[4][5:]))
