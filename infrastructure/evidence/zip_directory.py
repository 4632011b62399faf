"""A zip's central directory, read as zipfile reads it and kept compactly.

zipfile.ZipFile keeps a ZipInfo (~700 bytes) per member: at a 10,000-invoice bundle's 60,000
members that is most of what verifying it costs, and it grows with the bundle. This reads the
directory record by record, with zipfile's checks in zipfile's order and its error messages
(its end-of-directory search itself is zipfile's), and keeps per member only its name relative
to the one top folder (most bundles) and a few packed numbers, sorted by name.
tests/unit/test_zip_directory.py compares it with zipfile on damaged zips.
"""

from __future__ import annotations

import bisect
import heapq
import struct
import zipfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

MAX_EXTRACT_VERSION = 63  # zipfile's
_READ = 1 << 20


class TooManyEntriesError(ValueError):
    """The directory lists more members than the reader was asked to take."""


class SortedNames:
    """Names (holding no NUL) in sorted order, front-coded in blocks of 16: a block is one
    string, for each name the length it shares with the one before (as one character), then
    the rest of each, NUL-separated: about 20 bytes a bundle's name instead of a str's 120.
    Reading goes a block at a time, the last few read kept (a stream's files are neighbours)."""

    BLOCK = 16
    KEEP = 8  # blocks kept decoded

    def __init__(self, names: Iterable[str]) -> None:
        self.heads: list[str] = []  # each block's first name
        self.blocks: list[str] = []
        self.count = 0
        shared: list[str] = []
        rests: list[str] = []
        before = ""
        for name in names:
            if self.count % self.BLOCK == 0:
                if rests:
                    self.blocks.append("".join(shared) + "\0".join(rests))
                self.heads.append(name)
                shared, rests, before = [], [], ""
            if "\0" in name:
                raise ValueError("a name holds a NUL")  # zip names are cut at one
            n = _shared(before, name)
            shared.append(chr(n))
            rests.append(name[n:])
            before = name
            self.count += 1
        if rests:
            self.blocks.append("".join(shared) + "\0".join(rests))
        self._cached: tuple[int, list[str]] = (-1, [])  # the last block used
        self._kept: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return self.count

    def _block(self, b: int) -> list[str]:
        if self._cached[0] == b:
            return self._cached[1]
        names = self._kept.get(b)
        if names is None:
            text, k = self.blocks[b], min(self.BLOCK, self.count - b * self.BLOCK)
            pairs = zip(text[:k], text[k:].split("\0"), strict=True)
            names = list(accumulate(pairs, _next_name, initial=""))[1:]
            if len(self._kept) >= self.KEEP:
                del self._kept[next(iter(self._kept))]  # the oldest
            self._kept[b] = names
        self._cached = (b, names)
        return names

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self.count:
            raise IndexError(i)
        b, names = self._cached
        if b != i // self.BLOCK:
            names = self._block(i // self.BLOCK)
        return names[i % self.BLOCK]

    def __iter__(self) -> Iterator[str]:
        for b in range(len(self.blocks)):
            yield from list(self._block(b))

    def bisect_left(self, name: str, lo: int = 0) -> int:
        """Where `name` goes in the names (the first place at or after `lo` not below it)."""
        c, names = self._cached  # the block last used: a stream's next file is most often in it
        heads = self.heads
        if c >= 0 and heads[c] < name and (c + 1 == len(heads) or name <= heads[c + 1]):
            return max(c * self.BLOCK + bisect.bisect_left(names, name), lo)
        b = bisect.bisect_left(heads, name)  # block b-1 starts below it, b not
        if b == 0:
            at = 0
        else:
            at = (b - 1) * self.BLOCK + bisect.bisect_left(self._block(b - 1), name)
        return max(at, lo)


def _next_name(before: str, pair: tuple[str, str]) -> str:
    return before[: ord(pair[0])] + pair[1]


def _shared(a: str, b: str) -> int:
    """How many characters `a` and `b` start with in common: for ASCII, from the highest
    bit where their bytes differ; else compared by halves."""
    if a.isascii() and b.isascii():
        n = min(len(a), len(b))
        differ = int.from_bytes(a[:n].encode(), "big") ^ int.from_bytes(b[:n].encode(), "big")
        return n - (differ.bit_length() + 7) // 8
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Window:
    """At most `size` bytes of the file from `start`, read a piece at a time; `read(n)`
    gives fewer at the end, as io.BytesIO over those bytes (what zipfile reads them into)."""

    def __init__(self, fp: BinaryIO, start: int, size: int) -> None:
        fp.seek(start)
        self.fp, self.left = fp, size
        self.buf, self.at = b"", 0

    def read(self, n: int) -> bytes:
        if self.at + n > len(self.buf) and self.left:
            more = self.fp.read(min(self.left, max(_READ, n)))
            self.left = 0 if not more else self.left - len(more)
            self.buf, self.at = self.buf[self.at :] + more, 0
        out = self.buf[self.at : self.at + n]
        self.at += len(out)
        return out


@dataclass
class Directory:
    """The members in name order: `names[i]` is relative to `top` for the members under it
    (`under[i]` is 1) and whole for the others; the numbers are zipfile's ZipInfo fields."""

    top: str  # the first member's first folder, with its "/" ("" when it has none)
    concat: int = 0  # bytes before the zip (a member's header is at header_offset + concat)
    names: SortedNames = field(default_factory=lambda: SortedNames(()))
    under: bytearray = field(default_factory=bytearray)
    order: array[int] = field(default_factory=lambda: array("I"))  # each one's place in the zip
    header_offset: array[int] = field(default_factory=lambda: array("Q"))
    compress_size: array[int] = field(default_factory=lambda: array("Q"))
    file_size: array[int] = field(default_factory=lambda: array("Q"))
    crc: array[int] = field(default_factory=lambda: array("I"))
    method: array[int] = field(default_factory=lambda: array("H"))
    flags: array[int] = field(default_factory=lambda: array("H"))
    external_attr: array[int] = field(default_factory=lambda: array("I"))
    # The name before zipfile cuts it at a NUL (its `orig_filename`), where that differs.
    original: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def full(self, i: int) -> str:
        return self.top + self.names[i] if self.under[i] else self.names[i]

    def is_dir(self, i: int) -> bool:
        name = self.names[i]
        return name.endswith("/") or (self.under[i] == 1 and not name)  # or the top itself

    def all_under_top(self) -> bool:
        return bool(self.top) and self.under.count(1) == len(self.under)

    def find(self, name: str) -> int | None:
        """Where the member `name` (relative to `top`) is, when every member is under it."""
        i = self.names.bisect_left(name)
        return i if i < len(self.names) and self.names[i] == name else None


def read_directory(fp: BinaryIO, max_entries: int) -> Directory:
    """The central directory (zipfile.BadZipFile, NotImplementedError or UnicodeDecodeError
    as zipfile raises them; ValueError past `max_entries` members)."""
    try:
        endrec = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # zipfile's own search
    except OSError:
        raise zipfile.BadZipFile("File is not a zip file") from None
    if not endrec:
        raise zipfile.BadZipFile("File is not a zip file")
    size_cd, offset_cd = endrec[zipfile._ECD_SIZE], endrec[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    concat = endrec[zipfile._ECD_LOCATION] - size_cd - offset_cd  # type: ignore[attr-defined]
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    start_dir = offset_cd + concat
    if start_dir < 0:
        raise zipfile.BadZipFile("Bad offset for central directory")
    window = _Window(fp, start_dir, size_cd)
    run: list[tuple[str, int]] = []  # names not yet sorted, with their places in the zip
    runs: list[tuple[SortedNames, array[int]]] = []  # each RUN of them sorted, kept compact
    count = 0
    d = Directory("", concat)
    total = 0
    top = ""
    # Each column's append, looked up once (the loop runs once a member).
    add_under, add_offset, add_csize = (
        d.under.append,
        d.header_offset.append,
        d.compress_size.append,
    )
    add_size, add_crc, add_method = d.file_size.append, d.crc.append, d.method.append
    add_flags, add_attr, unpack = d.flags.append, d.external_attr.append, _CENTRAL.unpack
    while total < size_cd:
        record = window.read(46)
        if len(record) != 46:
            raise zipfile.BadZipFile("Truncated central directory")
        cd = unpack(record)
        if cd[0] != b"PK\001\002":
            raise zipfile.BadZipFile("Bad magic number for central directory")
        # The name, the extra field and the comment at once (as read one after the other)
        name_len, extra_len = cd[12], cd[13]
        rest = window.read(name_len + extra_len + cd[14])
        flags = cd[5]
        original = rest[:name_len].decode("utf-8" if flags & 0x800 else "cp437")
        if cd[3] > MAX_EXTRACT_VERSION:
            raise NotImplementedError(f"zip file version {cd[3] / 10:.1f}")
        size, csize, offset = cd[11], cd[10], cd[18]
        if extra_len:
            size, csize, offset = _zip64(rest[name_len : name_len + extra_len], size, csize, offset)
        if count >= max_entries:
            raise TooManyEntriesError(f"more than {max_entries:,} zip entries")
        name = original
        if "\0" in original:
            name = original[: original.index("\0")]
            d.original[count] = original
        if not count:
            top = d.top = name[: name.index("/") + 1] if "/" in name else ""
        inside = bool(top) and name.startswith(top)
        run.append((name[len(top) :] if inside else name, count))
        count += 1
        if len(run) == _RUN:
            runs.append(_sorted_run(run))
            run = []
        add_under(inside)
        add_offset(offset)
        add_csize(csize)
        add_size(size)
        add_crc(cd[9])
        add_method(cd[6])
        add_flags(flags)
        add_attr(cd[17])
        total += 46 + name_len + extra_len + cd[14]
    runs.append(_sorted_run(run))
    del run
    _sort(d, runs)
    return d


_RUN = 8192
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # a central directory record (zipfile's)


def _sorted_run(run: list[tuple[str, int]]) -> tuple[SortedNames, array[int]]:
    run.sort()
    return SortedNames(n for n, _ in run), array("I", (i for _, i in run))


def _zip64(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    """ZipInfo._decodeExtra: the ZIP64 sizes and offset, with its errors."""
    while len(extra) >= 4:
        tp, ln = struct.unpack("<HH", extra[:4])
        if ln + 4 > len(extra):
            raise zipfile.BadZipFile(f"Corrupt extra field {tp:04x} (size={ln})")
        if tp == 0x0001:
            data = extra[4 : ln + 4]
            what = ""
            try:
                if size in (0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF):
                    what = "File size"
                    (size,) = struct.unpack("<Q", data[:8])
                    data = data[8:]
                if csize == 0xFFFF_FFFF:
                    what = "Compress size"
                    (csize,) = struct.unpack("<Q", data[:8])
                    data = data[8:]
                if offset == 0xFFFF_FFFF:
                    what = "Header offset"
                    (offset,) = struct.unpack("<Q", data[:8])
            except struct.error:
                raise zipfile.BadZipFile(f"Corrupt zip64 extra field. {what} not found.") from None
        extra = extra[ln + 4 :]
    return size, csize, offset


def _sort(d: Directory, runs: list[tuple[SortedNames, array[int]]]) -> None:
    """Every field put in name order (the zip's order breaks ties), `order` keeping each
    one's place in the zip: the sorted runs merged, never all the names as strings at once."""
    perm = array("I")

    def merged() -> Iterator[str]:
        for name, i in heapq.merge(*(zip(n, p, strict=True) for n, p in runs)):
            perm.append(i)
            yield name

    d.names = SortedNames(merged())
    del runs[:]
    d.under = bytearray(d.under[i] for i in perm)
    for key in ("header_offset", "compress_size", "file_size", "crc", "method", "flags"):
        column = getattr(d, key)
        # 4 bytes a number where every one fits (an 8-byte "Q" only for a zip past 4 GiB)
        small = column.typecode == "Q" and max(column, default=0) < 1 << 32
        setattr(d, key, array("I" if small else column.typecode, (column[i] for i in perm)))
    d.external_attr = array("I", (d.external_attr[i] for i in perm))
    d.order = perm
    if d.original:
        place = {i: at for at, i in enumerate(perm) if i in d.original}
        d.original = {place[i]: name for i, name in d.original.items()}


def open_directory(path: Path, max_entries: int) -> tuple[BinaryIO, Directory]:
    """The zip file, opened, and its directory (the file is closed if reading it fails)."""
    fp = open(path, "rb")  # noqa: SIM115 - handed to the caller
    try:
        return fp, read_directory(fp, max_entries)
    except BaseException:
        fp.close()
        raise
