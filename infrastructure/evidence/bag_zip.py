"""BagIt 1.0 (RFC 8493) bags written straight into a zip, and read back with care.

Writing: every member gets the same timestamp and mode, in the order added, so the same bundle
contents give the same zip bytes. The tag files (bagit.txt, bag-info.txt with Payload-Oxum,
manifest-sha256.txt, tagmanifest-sha256.txt) are computed as the payload is written.

Reading: a bundle comes from outside. Entry names must be relative, normalised, free of `..`,
backslashes, drive letters and control characters, unique (also ignoring case), and not
symlinks; sizes and counts are bounded. The bag may sit at the zip's root or in one folder.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

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


def open_bag(bundle: Path, into: Path) -> Path:
    """Extract the bundle's one bag under `into` after checking every entry; its root."""
    try:
        archive = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as e:
        raise UnsafeBundleError(f"{bundle.name}: not a readable zip ({e})") from None
    with archive:
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
        files = [i for i in infos if not i.is_dir()]
        names = {i.filename for i in files}
        if "bagit.txt" in names:
            prefix = ""
        else:
            tops = {i.filename.split("/", 1)[0] for i in infos}
            if len(tops) != 1 or f"{next(iter(tops))}/bagit.txt" not in names:
                raise UnsafeBundleError(
                    "the zip holds no bag: bagit.txt at its root or in its one folder"
                )
            prefix = next(iter(tops)) + "/"
        root = into / "bag"
        root.mkdir(parents=True)
        for info in files:
            target = root.joinpath(*PurePosixPath(info.filename[len(prefix) :]).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    return root
