"""The streamed bundle writer and the one-pass verifier's pieces: the zip bytes are those
zipfile writes, the event and proof files are the canonical JSON of their documents, and the
report compared as it streams names the line a whole-file comparison names."""

from __future__ import annotations

import hashlib
import random
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.evidence.bundle_contents import canonical, event_file
from infrastructure.evidence.bag_zip import BAGIT_TXT, BagZipWriter, open_bag
from infrastructure.evidence.bundle import _proof_file
from infrastructure.evidence.bundle_verifier import _ReportCheck

WHEN = datetime(2026, 11, 3, 4, 5, 7, tzinfo=UTC)


def _files() -> list[tuple[str, bytes]]:
    rnd = random.Random(7)
    noise = bytes(rnd.randrange(256) for _ in range(200_000))
    return [
        ("invoices/a/events/1.json", b'{"x":1}'),
        ("empty", b""),
        ("report.html", noise + b"<p>\xe5\x8f\x91\xe7\xa5\xa8</p>\n" * 300_000),
        ("名字.txt", "数据".encode() * 1000),
    ]


def _zipfile_bag(out: Path, files: list[tuple[str, bytes]], info: list[tuple[str, str]]) -> None:
    """The same bag written with zipfile.writestr, member by member (how bundles were written)."""
    stamp = WHEN.timetuple()[:6]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:

        def put(path: str, data: bytes) -> None:
            member = zipfile.ZipInfo(f"bag/{path}", date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(member, data)

        payload = []
        for name, data in files:
            put(f"data/{name}", data)
            payload.append((f"data/{name}", hashlib.sha256(data).hexdigest(), len(data)))
        octets = sum(size for *_, size in payload)
        tags = {
            "bagit.txt": BAGIT_TXT,
            "bag-info.txt": "".join(
                f"{k}: {v}\n" for k, v in [*info, ("Payload-Oxum", f"{octets}.{len(payload)}")]
            ).encode(),
            "manifest-sha256.txt": "".join(f"{s}  {p}\n" for p, s, _ in sorted(payload)).encode(),
        }
        tags["tagmanifest-sha256.txt"] = "".join(
            f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(tags.items())
        ).encode()
        for name, data in tags.items():
            put(name, data)


def test_the_streamed_zip_is_byte_for_byte_what_zipfile_writes(tmp_path: Path) -> None:
    files = _files()
    ours = BagZipWriter(tmp_path / "ours.zip", "bag", WHEN)
    for name, data in files:
        if name == "report.html":  # written piece by piece, placed later
            spool = ours.spool()
            for i in range(0, len(data), 65_537):
                spool.write(data[i : i + 65_537])
            ours.add_spooled(name, spool)
        else:
            ours.add(name, data)
    ours.close([("Source-Organization", "北京云帆")])
    _zipfile_bag(tmp_path / "theirs.zip", files, [("Source-Organization", "北京云帆")])
    assert (tmp_path / "ours.zip").read_bytes() == (tmp_path / "theirs.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "ours.zip") as z:
        assert z.testzip() is None
        bag = open_bag(tmp_path / "ours.zip")
        try:
            assert bag.read("data/report.html") == files[2][1]  # the direct read, CRC checked
            assert b"".join(bag.stream("data/名字.txt")) == files[3][1]
            assert bag.validate() == ("1.0", [])
        finally:
            bag.close()


def test_a_member_whose_bytes_were_altered_is_refused_by_the_direct_read(tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    writer = BagZipWriter(out, "bag", WHEN)
    writer.add("a.txt", b"stored evidence " * 100)
    writer.close([])
    raw = bytearray(out.read_bytes())
    at = raw.index(b"a.txt") + len(b"a.txt") + 3  # inside the deflated bytes
    raw[at] ^= 0xFF
    out.write_bytes(bytes(raw))
    bag = open_bag(out)
    with pytest.raises(zipfile.BadZipFile):
        bag.read("data/a.txt")
    with pytest.raises(zipfile.BadZipFile):
        b"".join(bag.stream("data/a.txt"))
    bag.close()


@given(
    st.integers(0, 2**40),
    st.integers(1, 2**40),
    st.lists(st.binary(min_size=32, max_size=32), max_size=40),
)
def test_a_proof_file_is_the_canonical_json_of_its_document(
    index: int, size: int, path: list[bytes]
) -> None:
    document = {"leaf_index": index, "tree_size": size, "proof": [p.hex() for p in path]}
    assert _proof_file(index, size, path) == canonical(document)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(), _json_values, max_size=4),
    st.dictionaries(st.text(), _json_values, max_size=4),
    st.binary(max_size=60),
)
def test_an_event_file_is_the_canonical_json_of_its_three_parts(
    decoded: dict[str, object], leaf: dict[str, object], state: bytes
) -> None:
    import base64

    b64 = base64.b64encode(state).decode()
    document = {"leaf": leaf, "state_base64": b64, "decoded": decoded}
    assert event_file(canonical(decoded), canonical(leaf), b64) == canonical(document)


def _whole_file_line(theirs: bytes, ours: bytes) -> int | None:
    """What the verifier named before: the first differing line of the two split at newlines."""
    if theirs == ours:
        return None
    a, b = theirs.split(b"\n"), ours.split(b"\n")
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False), 1) if x != y),
        min(len(a), len(b)) + 1,
    )


_texts = st.text(alphabet="ab\n发", max_size=40)


@settings(max_examples=1000)
@given(_texts, _texts, st.integers(1, 7), st.integers(1, 7))
def test_the_streamed_report_comparison_names_the_whole_file_comparisons_line(
    theirs: str, ours: str, their_chunk: int, our_piece: int
) -> None:
    data = theirs.encode()
    check = _ReportCheck(
        iter([data[i : i + their_chunk] for i in range(0, len(data), their_chunk)])
    )
    for i in range(0, len(ours), our_piece):
        check.write(ours[i : i + our_piece])
    assert check.finish() == _whole_file_line(data, ours.encode())


def test_a_bag_of_many_files_is_still_byte_for_byte_what_zipfile_writes(tmp_path: Path) -> None:
    """Past a run of sorted manifest lines (SortedRecords.RUN) and a MB of manifest: the
    lines spilled and merged, the manifest deflated a piece at a time, the same bytes."""
    rnd = random.Random(3)
    files = [
        (f"invoices/{rnd.getrandbits(64):016x}/events/{n}.json", f'{{"n":{n}}}'.encode())
        for n in range(12_000)
    ]
    ours = BagZipWriter(tmp_path / "ours.zip", "bag", WHEN)
    for name, data in files:
        ours.add(name, data)
    ours.close([("Source-Organization", "x")])
    _zipfile_bag(tmp_path / "theirs.zip", files, [("Source-Organization", "x")])
    assert (tmp_path / "ours.zip").read_bytes() == (tmp_path / "theirs.zip").read_bytes()
    bag = open_bag(tmp_path / "ours.zip")
    try:
        assert bag.validate() == ("1.0", [])
    finally:
        bag.close()
