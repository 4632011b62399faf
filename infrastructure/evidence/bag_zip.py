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

import hashlib
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
MAX_ENTRIES = 2_000_000
MAX_TOTAL_BYTES = 16 * 1024**3
ZIP64_LIMIT = (1 << 31) - 1  # as zipfile's
_UTF8_NAME = 0x800
_REGULAR_FILE = (stat.S_IFREG | 0o644) << 16
_BUFFER = 1 << 20
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class BagZipWriter:
    """Adds payload files under `<bag>/data/`, then the tag files on `close`.

    The zip is written straight to the file as entries come (one buffered sequential write,
    no seeking back): each entry's CRC and deflated bytes are computed before its local
    header is written, so the bytes are those `zipfile.ZipFile.writestr` writes for the same
    entries (tests/unit/test_evidence_formats.py holds the two equal). What is kept per entry
    is only its central-directory record and its manifest line, packed."""

    def __init__(self, out: Path, bag_name: str, when: datetime) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.fp = open(out, "wb", buffering=_BUFFER)  # noqa: SIM115 - closed by close/abort
        self.offset = 0
        self.bag = bag_name
        y, mo, d, h, mi, s = when.astimezone(UTC).timetuple()[:6]
        self.dosdate = (y - 1980) << 9 | mo << 5 | d
        self.dostime = h << 11 | mi << 5 | (s // 2)
        self.central = bytearray()
        self.count = 0
        self.payload: list[bytes] = []  # path + NUL + raw SHA-256, per payload file
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
        self.central += struct.pack(
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
        self.central += encoded + cextra
        self.count += 1
        self.offset += advance

    def _write(self, path: str, data: bytes) -> None:
        compressed = zlib.compress(data, zlib.Z_DEFAULT_COMPRESSION, -15)
        self._entry(path, len(data), zlib.crc32(data), (compressed,), len(compressed))

    def add(self, path: str, data: bytes) -> None:
        """One payload file, `path` relative to data/."""
        full = f"data/{path}"
        self._write(full, data)
        self.payload.append(full.encode() + b"\0" + hashlib.sha256(data).digest())
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
        self.payload.append(full.encode() + b"\0" + digest)
        self.octets += size

    def close(self, bag_info: list[tuple[str, str]]) -> None:
        info = [*bag_info, ("Payload-Oxum", f"{self.octets}.{len(self.payload)}")]
        self.payload.sort()
        lines = []
        for item in self.payload:
            path, _, digest = item.partition(b"\0")
            lines.append(f"{digest.hex()}  {path.decode()}\n")
        self.payload = []
        tags = {
            "bagit.txt": BAGIT_TXT,
            "bag-info.txt": "".join(f"{k}: {v}\n" for k, v in info).encode(),
            "manifest-sha256.txt": "".join(lines).encode(),
        }
        del lines
        tags["tagmanifest-sha256.txt"] = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(tags.items())
        ).encode()
        for name, data in tags.items():
            self._write(name, data)
        self._end()
        self.fp.close()

    def _end(self) -> None:
        start, count, size = self.offset, self.count, len(self.central)
        self.fp.write(self.central)
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


def _check_name(name: str) -> None:
    shown = repr(name[:120])
    if not name or name.startswith("/") or "\\" in name or ":" in name.split("/", 1)[0]:
        raise UnsafeBundleError(f"zip entry {shown}: not a relative path")
    if _CONTROL.search(name):
        raise UnsafeBundleError(f"zip entry {shown}: control characters in its name")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeBundleError(f"zip entry {shown}: '.', '..' or an empty part in its path")


class ZipBag:
    """One bag inside an open zip, its members read on demand (never extracted)."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, infos: list[zipfile.ZipInfo]) -> None:
        self.archive = archive
        self.files = {i.filename[len(prefix) :]: i for i in infos if not i.is_dir()}
        self._children: dict[str, set[str]] = {}
        self._sha256: dict[str, str] = {}
        self._fp: BinaryIO | None = None
        children = self._children
        for name in self.files:
            # Each folder of the path names its child, deepest first, up to the first folder
            # already holding that child (its own folders were named when it was added).
            folder, _, child = name.rpartition("/")
            while folder:
                kids = children.get(folder)
                if kids is None:
                    kids = children[folder] = set()
                elif child in kids:
                    break
                kids.add(child)
                folder, _, child = folder.rpartition("/")

    def read(self, name: str) -> bytes | None:
        info = self.files.get(name)
        if info is None:
            return None
        data = self._read(info)
        # What was read is hashed once, so validating afterwards reads the zip in one pass.
        self._sha256[name] = hashlib.sha256(data).hexdigest()
        return data

    def _read(self, info: zipfile.ZipInfo) -> bytes:
        """The member's bytes: stored or deflated members straight from the file (its local
        header checked against the central directory, its CRC-32 and size checked, as zipfile
        does, without zipfile's per-member file objects); others through zipfile."""
        if (
            info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            or info.flag_bits & 0x61  # encrypted, patched data, strong encryption
            or not self.archive.filename
        ):
            return self.archive.read(info)
        fp = self._fp
        if fp is None:
            fp = self._fp = open(self.archive.filename, "rb", buffering=_BUFFER)  # noqa: SIM115
        fp.seek(info.header_offset)
        header = fp.read(30)
        if len(header) != 30 or header[:4] != b"PK\003\004":
            raise zipfile.BadZipFile(f"bad local file header for {info.filename!r}")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        name = fp.read(name_len)
        fp.seek(extra_len, 1)
        flags = struct.unpack("<H", header[6:8])[0]
        if name.decode("utf-8" if flags & _UTF8_NAME else "cp437") != info.orig_filename:
            raise zipfile.BadZipFile(
                f"file name in directory {info.orig_filename!r} and header {name!r} differ"
            )
        raw = fp.read(info.compress_size)
        if len(raw) != info.compress_size:
            raise zipfile.BadZipFile(f"{info.filename!r}: truncated")
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflate = zlib.decompressobj(-15)
            try:
                data = inflate.decompress(raw, info.file_size + 1)
            except zlib.error as e:
                raise zipfile.BadZipFile(f"{info.filename!r}: {e}") from None
        else:
            data = raw
        if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {info.filename!r}")
        return data

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def stream(self, name: str) -> Iterator[bytes]:
        """The file's bytes a piece at a time (hashed as they pass, like `read`)."""
        sha = hashlib.sha256()
        with self.archive.open(self.files[name]) as f:
            while chunk := f.read(_BUFFER):
                sha.update(chunk)
                yield chunk
        self._sha256[name] = sha.hexdigest()

    def _digest(self, algorithm: str, path: str) -> str | None:
        """The file's digest: from its earlier read, else read now (None if not in the bag)."""
        if algorithm == "sha256" and path in self._sha256:
            return self._sha256[path]
        data = self.read(path)
        return None if data is None else hashlib.new(algorithm, data).hexdigest()

    def children(self, folder: str) -> list[str]:
        """The names directly under `folder` (files and folders), sorted."""
        return sorted(self._children.get(folder.rstrip("/"), ()))

    def is_file(self, name: str) -> bool:
        return name in self.files

    def validate(self) -> tuple[str | None, list[str]]:
        """BagIt (RFC 8493): (the declared version, every failure): bagit.txt, every manifest
        and tag manifest checksum, no payload file unlisted, Payload-Oxum."""
        failures: list[str] = []
        declared = read_tags(self.read("bagit.txt") or b"")
        version = declared.get("BagIt-Version")
        if version is None or declared.get("Tag-File-Character-Encoding") != "UTF-8":
            failures.append("bagit.txt: needs BagIt-Version and Tag-File-Character-Encoding UTF-8")
        manifests = [n for n in self.files if "/" not in n and n.startswith("manifest-")]
        if not manifests:
            failures.append("BagIt: no payload manifest (manifest-<algorithm>.txt)")
        payload = {n for n in self.files if n.startswith("data/")}
        for name in sorted(manifests) + sorted(
            n for n in self.files if "/" not in n and n.startswith("tagmanifest-")
        ):
            listed = self._check_manifest(name, failures)
            if name.startswith("manifest-"):
                for missing in sorted(payload - listed):
                    failures.append(f"BagIt: {missing} is not in {name}")
        info = read_tags(self.read("bag-info.txt") or b"")
        oxum = info.get("Payload-Oxum")
        if oxum is not None:
            octets = sum(self.files[n].file_size for n in payload)
            if oxum != f"{octets}.{len(payload)}":
                failures.append(
                    f"bag-info.txt: Payload-Oxum {oxum}, the payload is {octets}.{len(payload)}"
                )
        return version, failures

    def _check_manifest(self, name: str, failures: list[str]) -> set[str]:
        algorithm = name.split("-", 1)[1].removesuffix(".txt")
        if algorithm not in ("sha256", "sha512"):
            failures.append(f"BagIt: {name}: algorithm {algorithm!r} is not supported")
            return set()
        listed = set()
        for n, line in enumerate(
            (self.read(name) or b"").decode("utf-8", "replace").splitlines(), 1
        ):
            digest, _, path = line.strip().partition(" ")
            path = path.strip().replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
            if not path:
                failures.append(f"BagIt: {name} line {n}: not '<checksum> <path>'")
                continue
            listed.add(path)
            found = self._digest(algorithm, path)
            if found is None:
                failures.append(f"BagIt: {path} is in {name} but not in the bag")
            elif found != digest.lower():
                failures.append(f"BagIt: {path}: its {algorithm} differs from {name}")
        return listed


def read_tags(data: bytes) -> dict[str, str]:
    tags = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            tags[key.strip()] = value.strip()
    return tags


def open_bag(archive: zipfile.ZipFile) -> ZipBag:
    """The zip's one bag, after checking every entry (UnsafeBundleError if it is not safe)."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UnsafeBundleError(f"more than {MAX_ENTRIES:,} zip entries")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise UnsafeBundleError("the zip unpacks to more than 16 GiB")
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
                else f"zip entries {seen[folded]!r} and {info.filename!r} differ only in case"
            )
        seen[folded] = info.filename
    names = {i.filename for i in infos if not i.is_dir()}
    if "bagit.txt" in names:
        return ZipBag(archive, "", infos)
    tops = {i.filename.split("/", 1)[0] for i in infos}
    if len(tops) != 1 or f"{next(iter(tops))}/bagit.txt" not in names:
        raise UnsafeBundleError("the zip holds no bag: bagit.txt at its root or in its one folder")
    return ZipBag(archive, next(iter(tops)) + "/", infos)
