"""The compact zip directory reader and the bag opened on it, held to zipfile: on damaged,
truncated, zip64, commented, prefixed and hostile zips the reader finds the members zipfile
finds or raises zipfile's error, and open_bag refuses what the zipfile-based open_bag refused
(it is kept here as the reference), with its message."""

from __future__ import annotations

import bisect
import hashlib
import io
import re
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.evidence import canonical_json
from infrastructure.evidence.bag_zip import (
    MAX_ENTRIES,
    UnsafeBundleError,
    _check_name,
    _lines,
    _name_rules,
    open_bag,
)
from infrastructure.evidence.zip_directory import (
    SortedNames,
    TooManyEntriesError,
    _shared,
    read_directory,
)

FIELDS = (
    "filename",
    "orig_filename",
    "header_offset",
    "compress_size",
    "file_size",
    "CRC",
    "compress_type",
    "flag_bits",
    "external_attr",
)


def _zip(members: list[tuple[str, bytes]], comment: bytes = b"", **kw: bool) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            with z.open(name, "w", force_zip64=kw.get("zip64", False)) as f:
                f.write(data)
        z.comment = comment
    return out.getvalue()


BAG = [
    ("bag/bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"),
    ("bag/data/a.txt", b"evidence " * 50),
    ("bag/data/b/c.json", b'{"x":1}'),
    ("bag/data/README.txt", b"read me"),
    ("bag/data/\u540d\u5b57.txt", "\u6570\u636e".encode()),
]


def _theirs(raw: bytes) -> object:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return [tuple(getattr(i, f) for f in FIELDS) for i in z.infolist()]
    except (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError) as e:
        return (type(e).__name__, str(e))


def _ours(raw: bytes, max_entries: int = MAX_ENTRIES) -> object:
    try:
        d = read_directory(io.BytesIO(raw), max_entries)
    except (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError) as e:
        return (type(e).__name__, str(e))
    rows = [None] * len(d)
    for i in range(len(d)):
        rows[d.order[i]] = (  # type: ignore[call-overload]
            d.full(i),
            d.original.get(i, d.full(i)),
            d.header_offset[i] + d.concat,
            d.compress_size[i],
            d.file_size[i],
            d.crc[i],
            d.method[i],
            d.flags[i],
            d.external_attr[i],
        )
    return rows


@pytest.mark.parametrize(
    "raw",
    [
        _zip(BAG),
        _zip(BAG, comment=b"a comment " * 100),
        _zip(BAG, zip64=True),
        b"#!/bin/sh\nexit 0\n" + _zip(BAG),  # data before the zip: offsets move
        _zip([]),
        _zip([("aXb.txt", b"x"), ("dir/", b"")]).replace(b"aXb", b"a\0b"),
        _zip(BAG)[:-22] + _zip(BAG)[-22:-6] + struct.pack("<LH", 10**6, 0),  # offset past it
        _zip(BAG)[:-40],  # the end record cut
        b"not a zip at all",
        b"",
    ],
    ids=[
        "bag",
        "comment",
        "zip64",
        "prefixed",
        "empty",
        "nul-and-dir",
        "bad-offset",
        "cut",
        "junk",
        "nothing",
    ],
)
def test_the_reader_finds_what_zipfile_finds(raw: bytes) -> None:
    assert _ours(raw) == _theirs(raw)


def test_a_zip64_end_record_is_read_as_zipfile_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # zipfile then writes ZIP64 ends
    raw = _zip(BAG)
    assert b"PK\006\006" in raw
    assert _ours(raw) == _theirs(raw)


def _record_fields(raw: bytes) -> list[int]:
    """Where each central-directory record starts."""
    starts, at = [], raw.find(b"PK\001\002")
    while at >= 0:
        starts.append(at)
        at = raw.find(b"PK\001\002", at + 4)
    return starts


def test_damaged_directory_records_give_zipfiles_errors() -> None:
    raw = _zip(BAG)
    first = _record_fields(raw)[0]
    cases = []
    bad = bytearray(raw)
    bad[first + 6] = 64  # "version needed to extract" 6.4
    cases.append(bytes(bad))
    bad = bytearray(raw)
    bad[first : first + 4] = b"PK\001\001"
    cases.append(bytes(bad))
    bad = bytearray(raw)
    struct.pack_into("<H", bad, first + 30, 9)  # an extra field longer than the record holds
    cases.append(bytes(bad))
    bad = bytearray(raw)
    bad[first + 9] |= 0x08  # the UTF-8 flag on a name that is not UTF-8
    bad[first + 46 + 8] = 0xFF
    cases.append(bytes(bad))
    for case in cases:
        theirs = _theirs(case)
        assert isinstance(theirs, tuple), theirs  # zipfile refuses each
        assert _ours(case) == theirs


def _with_extra(raw: bytes, extra: bytes, size: int | None = None) -> bytes:
    """The zip with `extra` as its first directory record's extra field (and that size)."""
    first = _record_fields(raw)[0]
    record = bytearray(raw[first : first + 46])
    name_len, extra_len = struct.unpack_from("<HH", record, 28)
    assert extra_len == 0
    struct.pack_into("<H", record, 30, len(extra))
    if size is not None:
        struct.pack_into("<L", record, 24, size)
    end = raw.rindex(b"PK\005\006")
    eocd = bytearray(raw[end:])
    struct.pack_into("<L", eocd, 12, struct.unpack_from("<L", eocd, 12)[0] + len(extra))
    name_end = first + 46 + name_len
    return (
        raw[:first]
        + bytes(record)
        + raw[first + 46 : name_end]
        + extra
        + raw[name_end:end]
        + bytes(eocd)
    )


def test_a_zip64_extra_field_without_its_sizes_is_refused_as_zipfile_refuses_it() -> None:
    raw = _with_extra(_zip([("bag/x", b"y"), ("bag/z", b"")]), b"\x01\x00\x00\x00", 0xFFFFFFFF)
    theirs = _theirs(bytes(raw))
    assert theirs == ("BadZipFile", "Corrupt zip64 extra field. File size not found.")
    assert _ours(bytes(raw)) == theirs
    sized = struct.pack("<HHQ", 1, 8, 1)  # a zip64 file size given: read from there
    raw = _with_extra(_zip([("bag/x", b"y"), ("bag/z", b"")]), sized, 0xFFFFFFFF)
    assert _ours(raw) == _theirs(raw)
    assert _ours(raw)[0][4] == 1  # type: ignore[index]
    other = _with_extra(_zip([("bag/x", b"y")]), struct.pack("<HH", 0x7075, 40))  # too short
    assert _theirs(other) == ("BadZipFile", "Corrupt extra field 7075 (size=40)")
    assert _ours(other) == _theirs(other)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_truncation_or_changed_byte_gives_what_zipfile_gives(data: st.DataObject) -> None:
    raw = bytearray(_zip(BAG, comment=b"c"))
    start = _record_fields(bytes(raw))[0]
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(1, 4))):
        if raw:
            at = data.draw(st.integers(min(max(0, start - 40), len(raw) - 1), len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    assert _ours(bytes(raw)) == _theirs(bytes(raw))


def test_too_many_entries_are_refused_before_they_are_all_kept() -> None:
    raw = _zip([(f"bag/{i}", b"") for i in range(5)])
    with pytest.raises(TooManyEntriesError, match="more than 4 zip entries"):
        read_directory(io.BytesIO(raw), 4)
    assert len(read_directory(io.BytesIO(raw), 5)) == 5


# ---- the bag: what the zipfile-based open_bag refused, and how it said so ----------------------


def _zipfile_open_bag(path: Path) -> tuple[str, dict[str, int]] | str:
    """The open_bag verify_bundle used before (zipfile's ZipInfo per member): (the bag's
    prefix, its files and their sizes), or what it refused the zip for."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        return f"not a readable zip ({e})"
    with archive:
        infos = archive.infolist()
        try:
            if len(infos) > MAX_ENTRIES:
                raise UnsafeBundleError(f"more than {MAX_ENTRIES:,} zip entries")
            seen: dict[str, str] = {}
            for info in infos:
                _check_name(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeBundleError(f"zip entry {info.filename!r}: a symbolic link")
                folded = info.filename.rstrip("/").casefold()
                if folded in seen:
                    raise UnsafeBundleError(
                        f"zip entry {info.filename!r} appears twice (duplicate name)"
                        if seen[folded] == info.filename
                        else f"zip entries {seen[folded]!r} and {info.filename!r} differ only "
                        "in case"
                    )
                seen[folded] = info.filename
            names = {i.filename for i in infos if not i.is_dir()}
            prefix = ""
            if "bagit.txt" not in names:
                tops = {i.filename.split("/", 1)[0] for i in infos}
                if len(tops) != 1 or f"{next(iter(tops))}/bagit.txt" not in names:
                    raise UnsafeBundleError(
                        "the zip holds no bag: bagit.txt at its root or in its one folder"
                    )
                prefix = next(iter(tops)) + "/"
        except UnsafeBundleError as e:
            return str(e)
        return prefix, {i.filename[len(prefix) :]: i.file_size for i in infos if not i.is_dir()}


def _our_open_bag(path: Path) -> tuple[str, dict[str, int]] | str:
    try:
        bag = open_bag(path)
    except (zipfile.BadZipFile, OSError) as e:
        return f"not a readable zip ({e})"
    except UnsafeBundleError as e:
        return str(e)
    try:
        sizes = {n: bag.d.file_size[bag._member(i)] for i, n in enumerate(bag.names)}
        assert list(bag.names) == sorted(sizes)
        return bag.prefix, sizes
    finally:
        bag.close()


def _write(path: Path, members: list[tuple[str, bytes] | zipfile.ZipInfo]) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicates written on purpose
        with zipfile.ZipFile(path, "w") as z:
            for m in members:
                if isinstance(m, zipfile.ZipInfo):
                    z.writestr(m, b"target")
                else:
                    z.writestr(*m)
    return path


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


HOSTILE: dict[str, list[tuple[str, bytes] | zipfile.ZipInfo]] = {
    "a bag": list(BAG),
    "a bag at the root": [(n.removeprefix("bag/"), d) for n, d in BAG],
    "a bag with its folder entries": [("bag/", b""), ("bag/data/", b""), *BAG],
    "a duplicate": [*BAG, ("bag/data/a.txt", b"other")],
    "a duplicate in capitals": [*BAG, ("bag/DATA/A.txt", b"other")],
    "copies over many blocks": [*BAG, *[("bag/data/b/c.json", b"x")] * 40, ("bag/DATA/a.TXT", b"")],
    "capitals over many blocks": [
        BAG[0],
        *[(f"bag/data/{i:02}/X", b"") for i in range(40)],
        *[(f"bag/data/{i:02}/x", b"") for i in range(40, 0, -1)],
    ],
    "a duplicate of a name with capitals": [*BAG, ("bag/data/readme.txt", b"x")],
    "a folder twice": [*BAG, ("bag/data/b/", b""), ("bag/data/B/", b"")],
    "a file and a folder of one name": [*BAG, ("bag/data/a.txt/", b"")],
    "two tops differing in case": [*BAG, ("BAG/data/z", b"")],
    "a parent reference": [*BAG, ("bag/../outside.txt", b"x")],
    "a parent reference before a duplicate": [
        BAG[0],
        ("bag/../x", b""),
        BAG[1],
        BAG[1],
    ],
    "a duplicate before a parent reference": [BAG[0], BAG[1], BAG[1], ("bag/../x", b"")],
    "an absolute path": [*BAG, ("/etc/passwd", b"x")],
    "a backslash": [*BAG, ("bag\\data\\x", b"x")],
    "a drive letter": [*BAG, ("c:/x", b"x")],
    "a control character": [*BAG, ("bag/data/x\ty", b"x")],
    "a NUL in a name": [*BAG, ("bag/data/a.txt\0.exe", b"x")],
    "a symbolic link": [*BAG, _link("bag/data/link")],
    "an empty part": [*BAG, ("bag/data//x", b"x")],
    "no bagit.txt": BAG[1:],
    "two folders": [*BAG, ("other/bagit.txt", b"")],
    "a file beside the folder": [*BAG, ("bag", b"x")],
    "nothing": [],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_open_bag_refuses_what_the_zipfile_open_bag_refused(case: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "b.zip", HOSTILE[case])
    assert _our_open_bag(path) == _zipfile_open_bag(path)


def test_a_truncated_or_unreadable_zip_is_not_readable_as_zipfile_says(tmp_path: Path) -> None:
    whole = _write(tmp_path / "b.zip", list(BAG)).read_bytes()
    for cut in (0, 10, len(whole) // 2, len(whole) - 30, len(whole) - 23):
        (tmp_path / "cut.zip").write_bytes(whole[:cut])
        assert _our_open_bag(tmp_path / "cut.zip") == _zipfile_open_bag(tmp_path / "cut.zip")
    assert _our_open_bag(tmp_path / "missing.zip") == _zipfile_open_bag(tmp_path / "missing.zip")
    assert _our_open_bag(tmp_path) == _zipfile_open_bag(tmp_path)  # a folder


def _flat(raw: bytes, tmp_path: Path) -> Path:
    path = tmp_path / "bag.zip"
    path.write_bytes(raw)
    return path


def test_a_tampered_member_with_its_crc_fixed_is_caught_by_the_bagit_check(
    tmp_path: Path,
) -> None:
    payload = b"evidence " * 50
    members = [
        ("bag/bagit.txt", BAG[0][1]),
        ("bag/data/a.txt", payload),
        (
            "bag/manifest-sha256.txt",
            f"{hashlib.sha256(payload).hexdigest()}  data/a.txt\n".encode(),
        ),
    ]
    path = _write(tmp_path / "good.zip", members)
    bag = open_bag(path)
    assert bag.validate() == ("1.0", [])
    bag.close()
    # Stored members: change a byte and its CRC-32 as an attacker would (sizes unchanged).
    raw = bytearray(path.read_bytes())
    at = raw.index(payload)
    raw[at] = ord("E")
    crc = zipfile.crc32(bytes(raw[at : at + len(payload)]))
    struct.pack_into("<L", raw, raw.rindex(b"PK\003\004", 0, at) + 14, crc)
    central = raw.index(b"bag/data/a.txt", raw.index(b"PK\001\002")) - 46
    struct.pack_into("<L", raw, central + 16, crc)
    bag = open_bag(_flat(bytes(raw), tmp_path))
    try:
        assert bag.read("data/a.txt") != payload  # read without complaint: the CRC matches
        assert bag.validate() == (
            "1.0",
            ["BagIt: data/a.txt: its sha256 differs from manifest-sha256.txt"],
        )
    finally:
        bag.close()


def test_overlapping_members_are_refused_as_zipfile_refuses_them(tmp_path: Path) -> None:
    """Two directory records naming the same bytes (the zip-bomb trick): the second's name
    is not the one its local header gives, which zipfile and the bag both refuse."""
    path = _write(tmp_path / "one.zip", [BAG[0], ("bag/data/a.txt", b"x" * 1000)])
    raw = path.read_bytes()
    records = _record_fields(raw)
    second = raw[records[1] : raw.index(b"PK\005\006")]
    copy = second.replace(b"bag/data/a.txt", b"bag/data/b.txt")
    end = bytearray(raw[raw.index(b"PK\005\006") :])
    struct.pack_into("<HH", end, 8, 3, 3)
    struct.pack_into("<L", end, 12, struct.unpack_from("<L", end, 12)[0] + len(copy))
    evil = _flat(raw[: raw.index(b"PK\005\006")] + copy + bytes(end), tmp_path)
    with zipfile.ZipFile(evil) as z:
        assert z.read("bag/data/a.txt") == b"x" * 1000
        with pytest.raises(zipfile.BadZipFile, match="File name in directory"):
            z.read("bag/data/b.txt")
    bag = open_bag(evil)
    try:
        assert bag.read("data/a.txt") == b"x" * 1000
        with pytest.raises(zipfile.BadZipFile, match="file name in directory"):
            bag.read("data/b.txt")
    finally:
        bag.close()


@settings(max_examples=300)
@given(st.text(alphabet="ab\n\r\x85\u2028\u00e9", max_size=30), st.integers(1, 7))
def test_manifest_lines_read_a_piece_at_a_time_are_its_lines(text: str, piece: int) -> None:
    data = text.encode()
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)]
    assert list(_lines(chunks)) == data.decode("utf-8", "replace").splitlines()


@settings(max_examples=500)
@given(
    st.lists(st.text(alphabet="ab/\u00e9\U0001f600", max_size=12), max_size=60),
    st.text(max_size=4),
)
def test_sorted_names_hold_and_find_what_a_sorted_list_does(names: list[str], probe: str) -> None:
    names.sort()
    kept = SortedNames(names)
    assert len(kept) == len(names) and list(kept) == names
    assert [kept[i] for i in reversed(range(len(names)))] == names[::-1]
    for name in [*names, probe, ""]:
        assert kept.bisect_left(name) == bisect.bisect_left(names, name)
    # from whatever block was read last (bisect_left starts from it when the name is in it)
    for k, name in enumerate([*names[::-1], probe, ""] * 2):
        if names:
            kept[(k * 7) % len(names)]
        assert kept.bisect_left(name) == bisect.bisect_left(names, name)


@settings(max_examples=2000)
@given(st.text(alphabet="a./:\\\x00\x1f\x7f\n\u00e9", max_size=12))
def test_a_name_of_the_everyday_shape_keeps_every_rule(name: str) -> None:
    # The short way (_SAFE_NAME) takes only names the rules take: _check_name refuses what
    # they refuse, with their words, and takes what they take.
    for candidate in (name, f"bag/{name}", f"{name}/x", f"{name}/"):
        try:
            _name_rules(candidate)
        except UnsafeBundleError as e:
            with pytest.raises(UnsafeBundleError, match=re.escape(str(e))):
                _check_name(candidate)
        else:
            _check_name(candidate)


@settings(max_examples=1000)
@given(
    st.text(alphabet="ab/\x7f\x00\u00e9\U0001f600", max_size=40),
    st.text(alphabet="ab/\x7f\x00\u00e9\U0001f600", max_size=40),
)
def test_the_shared_start_of_two_names_is_counted_in_characters(a: str, b: str) -> None:
    expected = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    assert _shared(a, b) == _shared(b, a) == expected
    assert _shared(a, a + b) == len(a)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json)
def test_canonical_json_in_pieces_is_canonical_json(value: object) -> None:
    try:
        whole = canonical_json.dumps(value)
    except Exception as e:  # noqa: BLE001 - the pieces must refuse it too
        with pytest.raises(type(e)):
            b"".join(canonical_json.dumps_pieces(value))
        return
    try:
        assert b"".join(canonical_json.dumps_pieces(value)) == whole
    except canonical_json.NotPlainError:  # a lone surrogate: read_manifest_text takes the whole
        pass
