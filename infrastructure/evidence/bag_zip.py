"""BagIt 1.0 (RFC 8493) bags written straight into a zip, and read back with care.

Writing: every member gets the same timestamp and mode, in the order added, so the same bundle
contents give the same zip bytes. The tag files (bagit.txt, bag-info.txt with Payload-Oxum,
manifest-sha256.txt, tagmanifest-sha256.txt) are computed as the payload is written.

Reading: a bundle comes from outside. Entry names must be relative, normalised, free of `..`,
backslashes, drive letters and control characters, unique (also ignoring case), and not
symlinks; sizes and counts are bounded. The bag may sit at the zip's root or in one folder.
Members are read from the zip as needed, never extracted; BagIt validation (every manifest
and tag manifest checksum, completeness, Payload-Oxum) is done on them directly.
"""

from __future__ import annotations

import codecs
import hashlib
import heapq
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from array import array
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from infrastructure.evidence.zip_directory import (
    Directory,
    SortedNames,
    TooManyEntriesError,
    open_directory,
)

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
MAX_ENTRIES = 2_000_000
MAX_TOTAL_BYTES = 16 * 1024**3
ZIP64_LIMIT = (1 << 31) - 1  # as zipfile's
_UTF8_NAME = 0x800
_REGULAR_FILE = (stat.S_IFREG | 0o644) << 16
_BUFFER = 1 << 20
_PIECE = 1 << 18  # what a member read piece by piece gives at a time
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class BagZipWriter:
    """Adds payload files under `<bag>/data/`, then the tag files on `close`.

    The zip is written straight to the file as entries come (one buffered sequential write,
    no seeking back): each entry's CRC and deflated bytes are computed before its local
    header is written, so the bytes are those `zipfile.ZipFile.writestr` writes for the same
    entries (tests/unit/test_evidence_formats.py holds the two equal). Each entry's
    central-directory record and manifest line go to temporary files as it is written (the
    lines sorted a run at a time, merged at the end), so memory does not grow with them."""

    def __init__(self, out: Path, bag_name: str, when: datetime) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.fp = open(out, "wb", buffering=_BUFFER)  # noqa: SIM115 - closed by close/abort
        self.offset = 0
        self.bag = bag_name
        y, mo, d, h, mi, s = when.astimezone(UTC).timetuple()[:6]
        self.dosdate = (y - 1980) << 9 | mo << 5 | d
        self.dostime = h << 11 | mi << 5 | (s // 2)
        self.central = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close/abort
        self.central_size = 0
        self.count = 0
        self.payload = SortedRecords()  # path + NUL + raw SHA-256, per payload file
        self.octets = 0

    def _entry(
        self, path: str, size: int, crc: int, compressed: Iterable[bytes], csize: int
    ) -> None:
        name = f"{self.bag}/{path}"
        try:
            encoded, flags = name.encode("ascii"), 0
        except UnicodeEncodeError:
            encoded, flags = name.encode("utf-8"), _UTF8_NAME
        version, extra = 20, b""
        local_size, local_csize = size, csize
        if size * 1.05 > ZIP64_LIMIT:  # as zipfile decides before it knows the compressed size
            version, extra = 45, struct.pack("<HHQQ", 1, 16, size, csize)
            local_size = local_csize = 0xFFFFFFFF
        self.fp.write(
            struct.pack(
                "<4s2B4HL2L2H",
                b"PK\003\004",
                version,
                0,
                flags,
                zipfile.ZIP_DEFLATED,
                self.dostime,
                self.dosdate,
                crc,
                local_csize,
                local_size,
                len(encoded),
                len(extra),
            )
            + encoded
            + extra
        )
        for chunk in compressed:
            self.fp.write(chunk)
        advance = 30 + len(encoded) + len(extra) + csize
        central_extra = []
        if size > ZIP64_LIMIT or csize > ZIP64_LIMIT:
            central_extra += [size, csize]
            size = csize = 0xFFFFFFFF
        offset = self.offset
        if offset > ZIP64_LIMIT:
            central_extra.append(offset)
            offset = 0xFFFFFFFF
        cextra = b""
        if central_extra:
            version = 45
            n = len(central_extra)
            cextra = struct.pack(f"<HH{n}Q", 1, 8 * n, *central_extra)
        record = struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\001\002",
            version,
            3,  # made on Unix, as zipfile says on every system but Windows
            version,
            0,
            flags,
            zipfile.ZIP_DEFLATED,
            self.dostime,
            self.dosdate,
            crc,
            csize,
            size,
            len(encoded),
            len(cextra),
            0,
            0,
            0,
            _REGULAR_FILE,
            offset,
        )
        record += encoded + cextra
        self.central.write(record)
        self.central_size += len(record)
        self.count += 1
        self.offset += advance

    def _write(self, path: str, data: bytes) -> None:
        compressed = zlib.compress(data, zlib.Z_DEFAULT_COMPRESSION, -15)
        self._entry(path, len(data), zlib.crc32(data), (compressed,), len(compressed))

    def add(self, path: str, data: bytes) -> None:
        """One payload file, `path` relative to data/."""
        full = f"data/{path}"
        self._write(full, data)
        self.payload.add(full.encode() + b"\0" + hashlib.sha256(data).digest())
        self.octets += len(data)

    def spool(self) -> Spool:
        """A payload file written piece by piece (deflated into a temporary file as it comes),
        placed in the zip later with `add_spooled`."""
        return Spool()

    def add_spooled(self, path: str, spool: Spool) -> None:
        full = f"data/{path}"
        size, crc, digest, csize = spool.finish()
        self._entry(full, size, crc, spool.chunks(), csize)
        spool.close()
        self.payload.add(full.encode() + b"\0" + digest)
        self.octets += size

    def close(self, bag_info: list[tuple[str, str]]) -> None:
        info = [*bag_info, ("Payload-Oxum", f"{self.octets}.{len(self.payload)}")]
        manifest = self.spool()
        for item in self.payload.sorted():
            path, _, digest = item.partition(b"\0")
            manifest.write(digest.hex().encode() + b"  " + path + b"\n")
        self.payload.close()
        size, crc, manifest_sha, csize = manifest.finish()
        tags = {
            "bagit.txt": BAGIT_TXT,
            "bag-info.txt": "".join(f"{k}: {v}\n" for k, v in info).encode(),
        }
        digests = {name: hashlib.sha256(data).digest() for name, data in tags.items()}
        digests["manifest-sha256.txt"] = manifest_sha
        tagmanifest = "".join(
            f"{digest.hex()}  {name}\n" for name, digest in sorted(digests.items())
        ).encode()
        for name, data in tags.items():
            self._write(name, data)
        self._entry("manifest-sha256.txt", size, crc, manifest.chunks(), csize)
        manifest.close()
        self._write("tagmanifest-sha256.txt", tagmanifest)
        self._end()
        self.fp.close()

    def _end(self) -> None:
        start, count, size = self.offset, self.count, self.central_size
        self.central.seek(0)
        shutil.copyfileobj(self.central, self.fp, _BUFFER)
        self.central.close()
        if count > 0xFFFF or start > ZIP64_LIMIT or size > ZIP64_LIMIT:
            self.fp.write(
                struct.pack(
                    "<4sQ2H2L4Q", b"PK\006\006", 44, 45, 45, 0, 0, count, count, size, start
                )
            )
            self.fp.write(struct.pack("<4sLQL", b"PK\006\007", 0, start + size, 1))
            count, size, start = min(count, 0xFFFF), min(size, 0xFFFFFFFF), min(start, 0xFFFFFFFF)
        self.fp.write(struct.pack("<4s4H2LH", b"PK\005\006", 0, 0, count, count, size, start, 0))

    def abort(self) -> None:
        self.fp.close()
        self.central.close()
        self.payload.close()


class SortedRecords:
    """Byte strings added in any order and given back sorted, kept meanwhile in a temporary
    file as sorted runs (merged when read), so memory holds one run, not all of them."""

    RUN = 4096

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close
        self.run: list[bytes] = []
        self.runs: list[tuple[int, int]] = []  # (where in the file, how many records)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, record: bytes) -> None:
        self.run.append(record)
        self.count += 1
        if len(self.run) >= self.RUN:
            self._spill()

    def _spill(self) -> None:
        if self.run:
            self.run.sort()
            self.runs.append((self.file.tell(), len(self.run)))
            self.file.write(b"".join(struct.pack("<L", len(r)) + r for r in self.run))
            self.run = []

    def sorted(self) -> Iterator[bytes]:
        self._spill()
        self.file.flush()
        return heapq.merge(*(self._read(at, n) for at, n in self.runs))

    def _read(self, at: int, n: int) -> Iterator[bytes]:
        fd, buf, i = self.file.fileno(), b"", 0  # what was read of the run, and how far used
        for _ in range(n):
            while len(buf) - i < 4 or len(buf) - i < 4 + struct.unpack_from("<L", buf, i)[0]:
                more = os.pread(fd, 1 << 16, at)
                if not more:
                    raise ValueError("a run of records ends early")  # the file is ours
                buf, i, at = buf[i:] + more, 0, at + len(more)
            size = struct.unpack_from("<L", buf, i)[0]
            yield buf[i + 4 : i + 4 + size]
            i += 4 + size

    def close(self) -> None:
        self.file.close()


class Spool:
    """One file's bytes, deflated as they are written into a temporary file (its CRC-32,
    SHA-256 and size kept as they pass), so a large file costs no memory."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.crc, self.size, self.sha = 0, 0, hashlib.sha256()
        self.pending: list[bytes] = []
        self.pending_size = 0

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= _BUFFER:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.sha.update(data)
        self.file.write(self.deflate.compress(data))

    def finish(self) -> tuple[int, int, bytes, int]:
        """(size, CRC-32, SHA-256, deflated size), once every piece is in."""
        self._flush()
        self.file.write(self.deflate.flush())
        csize = self.file.tell()
        self.file.seek(0)
        return self.size, self.crc, self.sha.digest(), csize

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.file.read(_BUFFER):
            yield chunk

    def close(self) -> None:
        self.file.close()


class UnsafeBundleError(ValueError):
    """The zip cannot be opened safely as one bag."""


# A name `_check_name` takes, in its everyday shape: relative, parts of printable characters
# (no "\\"; no ":" in the first), none empty, "." or "..", at most one "/" at the end. Any
# other name is checked rule by rule (tests/unit/test_zip_directory.py holds the two to it).
_FIRST = r"(?!\.\.?(?:/|\Z))[^/\\:\x00-\x1f\x7f]+"
_PART = r"(?!\.\.?(?:/|\Z))[^/\\\x00-\x1f\x7f]+"
_SAFE_NAME = re.compile(f"{_FIRST}(?:/{_PART})*/?")


def _check_name(name: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        _name_rules(name)


def _name_rules(name: str) -> None:
    shown = repr(name[:120])
    if not name or name.startswith("/") or "\\" in name or ":" in name.split("/", 1)[0]:
        raise UnsafeBundleError(f"zip entry {shown}: not a relative path")
    if _CONTROL.search(name):
        raise UnsafeBundleError(f"zip entry {shown}: control characters in its name")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeBundleError(f"zip entry {shown}: '.', '..' or an empty part in its path")


class ZipBag:
    """One bag inside a zip, its members read on demand (never extracted). What is kept per
    member is its name (sorted, relative to the bag) and its directory numbers, its SHA-256
    once read (32 bytes), and nothing else: a bag of 60,000 members costs a few MB."""

    def __init__(self, path: Path, fp: BinaryIO, d: Directory, prefix: str) -> None:
        self.path, self.fp, self.prefix = path, fp, prefix
        self.d = d
        if prefix == d.top and d.all_under_top():
            folders = any(d.is_dir(i) for i in range(len(d)))
            self.names = d.names
            self.at: list[int] | None = None
            if folders:  # folder entries: the bag has files only
                self.at = [i for i in range(len(d)) if not d.is_dir(i)]
                self.names = SortedNames(d.names[i] for i in self.at)
        else:  # a bag at the zip's root: its names are the whole names
            whole = sorted(
                ((d.full(i)[len(prefix) :], i) for i in range(len(d)) if not d.is_dir(i)),
            )
            self.names = SortedNames(n for n, _ in whole)
            self.at = [i for _, i in whole]
        self._sha256 = bytearray(32 * len(self.names))
        self._hashed = bytearray(len(self.names))
        self._zip: zipfile.ZipFile | None = None  # only for members stored otherwise

    def __len__(self) -> int:
        return len(self.names)

    def position(self, name: str) -> int | None:
        """The file's place in the sorted names (None if the bag has no such file)."""
        names = self.names
        i = names.bisect_left(name)
        return i if i < len(names) and names[i] == name else None

    def under(self, prefix: str) -> range:
        """The places of the names that start with `prefix`."""
        if not prefix:
            return range(len(self.names))
        lo = self.names.bisect_left(prefix)
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first name past them all
        return range(lo, self.names.bisect_left(after, lo))

    def read(self, name: str, at: int | None = -1) -> bytes | None:
        """The file's bytes (None if the bag has no such file); `at`, its position if known."""
        if at == -1:
            at = self.position(name)
        if at is None:
            return None
        data = b"".join(self._chunks(at, whole=True))
        # What was read is hashed once, so validating afterwards reads the zip in one pass.
        self._sha256[32 * at : 32 * at + 32] = hashlib.sha256(data).digest()
        self._hashed[at] = 1
        return data

    def _member(self, at: int) -> int:
        return at if self.at is None else self.at[at]

    def _chunks(self, at: int, whole: bool = False) -> Iterator[bytes]:
        """The member's bytes: stored or deflated members straight from the file (its local
        header checked against the central directory, its CRC-32 and size checked, as zipfile
        does); others through zipfile."""
        d, i = self.d, self._member(at)
        name, method = d.full(i), d.method[i]
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or d.flags[i] & 0x61:
            if self._zip is None:  # encrypted, patched data, strong encryption, other methods
                self._zip = zipfile.ZipFile(self.path)
            with self._zip.open(name) as f:
                while chunk := f.read(_PIECE):
                    yield chunk
            return
        fd = self.fp.fileno()
        offset = d.header_offset[i] + d.concat
        header = os.pread(fd, 30, offset)
        if len(header) != 30 or header[:4] != b"PK\003\004":
            raise zipfile.BadZipFile(f"bad local file header for {name!r}")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        local = os.pread(fd, name_len, offset + 30)
        flags = struct.unpack("<H", header[6:8])[0]
        original = d.original.get(i, name)
        # (an ASCII name reads the same either way: no codec table to go through)
        text = local.decode(
            "ascii" if local.isascii() else "utf-8" if flags & _UTF8_NAME else "cp437"
        )
        if text != original:
            raise zipfile.BadZipFile(
                f"file name in directory {original!r} and header {local!r} differ"
            )
        at_data, left = offset + 30 + name_len + extra_len, d.compress_size[i]
        size, crc, want = 0, 0, d.file_size[i]
        inflate = zlib.decompressobj(-15) if method == zipfile.ZIP_DEFLATED else None
        step = left if whole else _PIECE
        raw = b""  # deflated bytes read, not yet inflated (what a piece's limit left over)
        while raw or left:
            if not raw:
                raw = os.pread(fd, min(left, step), at_data)
                if not raw:
                    raise zipfile.BadZipFile(f"{name!r}: truncated")
                at_data, left = at_data + len(raw), left - len(raw)
            if inflate is not None:
                limit = want + 1 - size  # one byte more than it should give: too long
                try:
                    data = inflate.decompress(raw, limit if whole else min(limit, _PIECE))
                except zlib.error as e:
                    raise zipfile.BadZipFile(f"{name!r}: {e}") from None
                raw = inflate.unconsumed_tail
            else:
                data, raw = raw, b""
            size += len(data)
            if size > want:
                break
            crc = zlib.crc32(data, crc)
            yield data
        if size != want or crc != d.crc[i]:
            raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {name!r}")

    def close(self) -> None:
        self.fp.close()
        if self._zip is not None:
            self._zip.close()

    def stream(self, name: str) -> Iterator[bytes]:
        """The file's bytes a piece at a time (hashed as they pass, like `read`)."""
        at = self.position(name)
        if at is None:
            raise KeyError(name)
        sha = hashlib.sha256()
        for chunk in self._chunks(at):
            sha.update(chunk)
            yield chunk
        self._sha256[32 * at : 32 * at + 32] = sha.digest()
        self._hashed[at] = 1

    def hashes(self, at: range) -> tuple[bytes, bytes]:
        """Which of these files were read, and their SHA-256 (zeros where not)."""
        return bytes(self._hashed[at.start : at.stop]), bytes(
            self._sha256[32 * at.start : 32 * at.stop]
        )

    def add_hashes(self, start: int, hashed: bytes, sha256: bytes) -> None:
        """What another reader of this bag (a forked worker) read from `start` on, as
        `hashes` gave it, for files this one has not read: validating reads them no more."""
        stop = start + len(hashed)
        self._hashed[start:stop] = hashed
        self._sha256[32 * start : 32 * stop] = sha256

    def _digest(self, algorithm: str, at: int) -> str:
        """The file's digest: from its earlier read, else read now."""
        if algorithm == "sha256" and self._hashed[at]:
            return self._sha256[32 * at : 32 * at + 32].hex()
        sha = hashlib.new(algorithm)
        for chunk in self.stream(self.names[at]):
            sha.update(chunk)
        return sha.hexdigest()

    def children(self, folder: str) -> list[str]:
        """The names directly under `folder` (files and folders), sorted."""
        folders, files = self.entries(folder)
        return sorted(folders | files)

    def entries(self, folder: str) -> tuple[set[str], set[str]]:
        """The folders and the files directly under `folder` (a name may be both)."""
        start = folder.rstrip("/") + "/"
        names, folders, files = self.names, set(), set()
        i, end = self.under(start).start, len(self.names)
        while i < end and names[i].startswith(start):
            child, slash, _ = names[i][len(start) :].partition("/")
            if slash:  # a folder: past all its names at once
                folders.add(child)
                i = names.bisect_left(f"{start}{child}0", i + 1)
            else:
                files.add(child)
                i += 1
        return folders, files

    def is_file(self, name: str) -> bool:
        return self.position(name) is not None

    def file_names(self, prefix: str = "") -> Iterator[str]:
        """The files whose names start with `prefix`, sorted."""
        return (self.names[i] for i in self.under(prefix))

    def validate(self) -> tuple[str | None, list[str]]:
        """BagIt (RFC 8493): (the declared version, every failure): bagit.txt, every manifest
        and tag manifest checksum, no payload file unlisted, Payload-Oxum."""
        failures: list[str] = []
        declared = read_tags(self.read("bagit.txt") or b"")
        version = declared.get("BagIt-Version")
        if version is None or declared.get("Tag-File-Character-Encoding") != "UTF-8":
            failures.append("bagit.txt: needs BagIt-Version and Tag-File-Character-Encoding UTF-8")
        manifests = [n for n in self.file_names("manifest-") if "/" not in n]
        if not manifests:
            failures.append("BagIt: no payload manifest (manifest-<algorithm>.txt)")
        payload = self.under("data/")
        for name in manifests + [n for n in self.file_names("tagmanifest-") if "/" not in n]:
            listed = bytearray(len(payload))  # which payload files the manifest lists
            self._check_manifest(name, failures, payload, listed)
            if name.startswith("manifest-"):
                for i in payload:
                    if not listed[i - payload.start]:
                        failures.append(f"BagIt: {self.names[i]} is not in {name}")
        info = read_tags(self.read("bag-info.txt") or b"")
        oxum = info.get("Payload-Oxum")
        if oxum is not None:
            octets = sum(self.d.file_size[self._member(i)] for i in payload)
            if oxum != f"{octets}.{len(payload)}":
                failures.append(
                    f"bag-info.txt: Payload-Oxum {oxum}, the payload is {octets}.{len(payload)}"
                )
        return version, failures

    def _check_manifest(
        self, name: str, failures: list[str], payload: range, listed: bytearray
    ) -> None:
        algorithm = name.split("-", 1)[1].removesuffix(".txt")
        if algorithm not in ("sha256", "sha512"):
            failures.append(f"BagIt: {name}: algorithm {algorithm!r} is not supported")
            return
        for n, line in enumerate(_lines(self.stream(name)), 1):
            digest, _, path = line.strip().partition(" ")
            path = path.strip().replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
            if not path:
                failures.append(f"BagIt: {name} line {n}: not '<checksum> <path>'")
                continue
            at = self.position(path)
            if at is None:
                failures.append(f"BagIt: {path} is in {name} but not in the bag")
                continue
            if at in payload:
                listed[at - payload.start] = 1
            if self._digest(algorithm, at) != digest.lower():
                failures.append(f"BagIt: {path}: its {algorithm} differs from {name}")


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """`data.decode("utf-8", "replace").splitlines()` of the chunks joined, a piece at a time."""
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    pending = ""
    for chunk in chunks:
        lines = (pending + decode(chunk)).splitlines(keepends=True)
        pending = lines.pop() if lines else ""  # it may go on (or "\r" be followed by "\n")
        for line in lines:
            yield line.splitlines()[0]
    yield from (pending + decode(b"", final=True)).splitlines()


def read_tags(data: bytes) -> dict[str, str]:
    tags = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            tags[key.strip()] = value.strip()
    return tags


def open_bag(path: Path) -> ZipBag:
    """The zip's one bag, after checking every entry (UnsafeBundleError if it is not safe;
    zipfile.BadZipFile and OSError if it is not a readable zip, as zipfile raises them)."""
    try:
        fp, d = open_directory(path, MAX_ENTRIES)
    except TooManyEntriesError as e:
        raise UnsafeBundleError(str(e)) from None
    try:
        return _open_bag(path, fp, d)
    except BaseException:
        fp.close()
        raise


def _open_bag(path: Path, fp: BinaryIO, d: Directory) -> ZipBag:
    if sum(d.file_size) > MAX_TOTAL_BYTES:
        raise UnsafeBundleError("the zip unpacks to more than 16 GiB")
    first: tuple[int, str] | None = None  # the first entry (in the zip's order) refused
    top = d.top
    for i, (name, under, attr) in enumerate(zip(d.names, d.under, d.external_attr, strict=True)):
        if under:
            name = top + name
        try:
            _check_name(name)
            if stat.S_ISLNK(attr >> 16):
                raise UnsafeBundleError(f"zip entry {name!r}: a symbolic link")
        except UnsafeBundleError as e:
            if first is None or d.order[i] < first[0]:
                first = (d.order[i], str(e))
    twice = _duplicate(d)
    if twice is not None and (first is None or twice[0] < first[0]):
        first = twice
    if first is not None:
        raise UnsafeBundleError(first[1])
    d.order = d.external_attr = array("I")  # what only these checks needed
    if d.all_under_top():
        if d.find("bagit.txt") is None:
            raise UnsafeBundleError(
                "the zip holds no bag: bagit.txt at its root or in its one folder"
            )
        return ZipBag(path, fp, d, d.top)
    names = {d.full(i) for i in range(len(d)) if not d.is_dir(i)}
    if "bagit.txt" in names:
        return ZipBag(path, fp, d, "")
    tops = {d.full(i).split("/", 1)[0] for i in range(len(d))}
    if len(tops) != 1 or f"{next(iter(tops))}/bagit.txt" not in names:
        raise UnsafeBundleError("the zip holds no bag: bagit.txt at its root or in its one folder")
    return ZipBag(path, fp, d, next(iter(tops)) + "/")


def _duplicate(d: Directory) -> tuple[int, str] | None:
    """The first entry (in the zip's order) whose name another before it has, also ignoring
    case and a trailing "/", and what to say of it.

    When every name is under the top folder, names already folded are compared with their
    neighbours in the sorted names (no copy of them is made); only the others (a capital, a
    trailing "/") are folded and kept. Else every name is folded, as zipfile's names were."""
    if not d.all_under_top():
        seen: dict[str, str] = {}
        for i in sorted(range(len(d)), key=d.order.__getitem__):
            name = d.full(i)
            folded = name.rstrip("/").casefold()
            if folded in seen:
                return d.order[i], _twice(seen[folded], name)
            seen[folded] = name
        return None
    groups: dict[str, list[int]] = {}  # a folded name: the entries (in the zip's order) with it
    names, found = d.names, None
    plain = bytearray(len(names))  # the name is its own folded form
    before = None
    for i, name in enumerate(names):
        key = name.rstrip("/").casefold()
        if key == name:
            plain[i] = 1
            if name == before:
                groups.setdefault(name, [])
            before = name
        else:
            groups.setdefault(key, []).append(i)
            before = None
    for key, members in groups.items():
        at = names.bisect_left(key)
        while at < len(names) and names[at] == key:
            members.append(at)
            at += 1
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=d.order.__getitem__)
            first, second = members[0], members[1]
            if found is None or d.order[second] < found[0]:
                found = (d.order[second], _twice(d.full(first), d.full(second)))
    return found


def _twice(seen: str, name: str) -> str:
    return (
        f"zip entry {name!r} appears twice (duplicate name)"
        if seen == name
        else f"zip entries {seen!r} and {name!r} differ only in case"
    )
