"""The text and JSON formats a bundle's verifier relies on: stream-head leaves (written out by
hand for speed, held equal to RFC 8785), checkpoint notes with the stream-heads extension line,
verifier keys, and manifests."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from application.evidence.bundle_contents import manifest_text, person, read_manifest_text
from application.evidence.leaf_encoding import head_bytes, head_document
from domain.evidence.checkpoint import (
    Checkpoint,
    NoteFormatError,
    NoteSignature,
    StreamHeads,
    note,
    parse_note,
    parse_verifier_key,
    verifier_key,
)


@given(st.uuids(), st.integers(1, 2**53 - 1), st.integers(0, 2**53 - 1))
def test_the_head_leaf_is_the_rfc8785_json_of_the_head(
    stream: uuid.UUID, version: int, position: int
) -> None:
    assert head_bytes(stream, version, position) == rfc8785.dumps(
        head_document(stream, version, position)
    )


def test_a_checkpoint_note_carries_the_stream_heads_line_and_reads_back() -> None:
    heads = StreamHeads(3, hashlib.sha256(b"heads").digest())
    checkpoint = Checkpoint("example.com/log", 8, hashlib.sha256(b"root").digest(), (heads.line(),))
    text = note(checkpoint, [NoteSignature("example.com/log/k", b"\x01\x02\x03\x04", b"s" * 64)])
    assert text.splitlines()[3] == f"fapiao-stream-heads/v1 3 {heads.root_b64}"
    parsed, sigs = parse_note(text)
    assert parsed == checkpoint and parsed.stream_heads() == heads
    assert sigs[0].key_id == b"\x01\x02\x03\x04"


@pytest.mark.parametrize(
    "body",
    [
        "origin\n08\nAAAA\n",  # leading zero
        "origin\n-1\n" + base64.b64encode(b"x" * 32).decode() + "\n",
        "origin\n1\nnot-base64\n",
        "origin\n1\n" + base64.b64encode(b"x" * 31).decode() + "\n",
        "origin\n1\n" + base64.b64encode(b"x" * 32).decode() + "\nfapiao-stream-heads/v1 x y\n",
    ],
)
def test_malformed_checkpoints_are_refused(body: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_note(body + "\n\u2014 k " + base64.b64encode(b"\0" * 68).decode() + "\n")


def test_verifier_keys_round_trip_and_a_wrong_key_id_is_refused() -> None:
    public = hashlib.sha256(b"k").digest()
    text = verifier_key("example.com/log/k1", public)
    assert parse_verifier_key(text).public_key == public
    name, _, b64 = text.split("+", 2)
    with pytest.raises(NoteFormatError, match="key id"):
        parse_verifier_key(f"{name}+00000000+{b64}")


def test_a_manifest_is_one_line_of_canonical_json_under_its_title() -> None:
    manifest = {"bundle_id": "b", "tenant": {"name": "北京云帆", "taxpayer_code": "x"}}
    text = manifest_text(manifest)
    assert text.count("\n") == 2 and read_manifest_text(text) == manifest
    with pytest.raises(ValueError, match="canonical"):
        read_manifest_text('fapiao-ledger bundle manifest v1\n{"tenant": 1, "bundle_id": 2}\n')


def test_the_report_names_a_person_where_one_is_known() -> None:
    assert person("key:k1/user:zhang.san") == "zhang.san (key k1)"
    assert person("cli:root") == "root"
    assert person("key:k1") == "API 密钥 API key k1"
    assert person("system:ack-ticker") == "system:ack-ticker"
