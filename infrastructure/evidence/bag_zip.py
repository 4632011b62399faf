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
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
MAX_ENTRIES = 2_000_000
MAX_TOTAL_BYTES = 16 * 1024**3


class BagZipWriter:
    """Adds payload files under `<bag>/data/`, then the tag files on `close`."""

    def __init__(self, out: Path, bag_name: str, when: datetime) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.zip = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED)
        self.bag = bag_name
        self.stamp = when.astimezone(UTC).timetuple()[:6]
        self.payload: list[tuple[str, str, int]] = []  # (path in the bag, sha256, size)

    def _write(self, path: str, data: bytes) -> None:
        info = zipfile.ZipInfo(f"{self.bag}/{path}", date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        self.zip.writestr(info, data)

    def add(self, path: str, data: bytes) -> None:
        """One payload file, `path` relative to data/."""
        full = f"data/{path}"
        self._write(full, data)
        self.payload.append((full, hashlib.sha256(data).hexdigest(), len(data)))

    def close(self, bag_info: list[tuple[str, str]]) -> None:
        octets = sum(size for _, _, size in self.payload)
        info = [*bag_info, ("Payload-Oxum", f"{octets}.{len(self.payload)}")]
        tags = {
            "bagit.txt": BAGIT_TXT,
            "bag-info.txt": "".join(f"{k}: {v}\n" for k, v in info).encode(),
            "manifest-sha256.txt": "".join(
                f"{sha}  {path}\n" for path, sha, _ in sorted(self.payload)
            ).encode(),
        }
        tags["tagmanifest-sha256.txt"] = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(tags.items())
        ).encode()
        for name, data in tags.items():
            self._write(name, data)
        self.zip.close()

    def abort(self) -> None:
        self.zip.close()


class UnsafeBundleError(ValueError):
    """The zip cannot be opened safely as one bag."""


def _check_name(name: str) -> None:
    shown = repr(name[:120])
    if not name or name.startswith("/") or "\\" in name or ":" in name.split("/", 1)[0]:
        raise UnsafeBundleError(f"zip entry {shown}: not a relative path")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
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
        for name in self.files:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                self._children.setdefault("/".join(parts[:depth]), set()).add(parts[depth])

    def read(self, name: str) -> bytes | None:
        info = self.files.get(name)
        if info is None:
            return None
        data = self.archive.read(info)
        # What was read is hashed once, so validating afterwards reads the zip in one pass.
        self._sha256[name] = hashlib.sha256(data).hexdigest()
        return data

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
