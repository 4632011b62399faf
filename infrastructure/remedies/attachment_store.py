"""Content-addressed attachment storage on the filesystem (the default `AttachmentStore`).

A file is kept once under its SHA-256, however often it is referenced. Its type is decided by
its content (PDF, OFD, XML, JPEG, PNG), never by its name; anything else, an empty file or one
over the size limit is refused and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from domain.bounds import check_file_name
from domain.errors import InvalidFieldError
from domain.remedies.attachment_ref import ALLOWED_TYPES, AttachmentRef

DEFAULT_LIMIT = 20 * 1024 * 1024
MAX_ZIP_ENTRIES = 10_000
INFLATION_FACTOR = 10  # an OFD may inflate to at most ten times the attachment limit


class AttachmentRejectedError(InvalidFieldError):
    rule = "attachment"


def sniff(path: Path, inflated_limit: int = DEFAULT_LIMIT * INFLATION_FACTOR) -> str | None:
    """The media type by content, or None when it is not one we accept. A zip (OFD) is
    checked from its directory before anything in it is read: entry count and inflated size."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                entries = z.infolist()
                if len(entries) > MAX_ZIP_ENTRIES:
                    raise AttachmentRejectedError(
                        "file", f"holds more than {MAX_ZIP_ENTRIES} entries", "attachment_entries"
                    )
                if sum(e.file_size for e in entries) > inflated_limit:
                    raise AttachmentRejectedError(
                        "file",
                        f"inflates to more than {inflated_limit // (1024 * 1024)} MiB",
                        "attachment_inflated_size",
                    )
                names = {e.filename for e in entries}
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
            return None
        return "application/ofd" if "OFD.xml" in names else None
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<?xml"):
        return "application/xml"
    return None


class FileAttachmentStore:
    def __init__(self, root: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.root = root
        self.limit = limit

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

    def put(self, stream: BinaryIO, name: str) -> AttachmentRef:
        """Store the stream (if new) and describe it; refuses and keeps nothing on failure."""
        return self._put(stream, name)[0]

    def _put(self, stream: BinaryIO, name: str) -> tuple[AttachmentRef, bool]:
        name = _safe_name(name)  # refused before a byte is stored
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > self.limit:
                        raise AttachmentRejectedError(
                            "file",
                            f"{name} is larger than {self.limit // (1024 * 1024)} MiB",
                            "attachment_size",
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise AttachmentRejectedError("file", f"{name} is empty", "attachment_empty")
            media_type = sniff(tmp_path, self.limit * INFLATION_FACTOR)
            if media_type is None:
                allowed = ", ".join(ALLOWED_TYPES.values())
                raise AttachmentRejectedError(
                    "file",
                    f"{name}: the content is not {allowed} (whatever its name says)",
                    "attachment_type",
                )
            sha = digest.hexdigest()
            final = self.path_of(sha)
            created = not final.exists()
            if not created:
                tmp_path.unlink()  # stored once, however often referenced
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_path, final)
            return AttachmentRef(sha, name, media_type, size), created
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    @contextmanager
    def staged(self, stream: BinaryIO, name: str) -> Iterator[AttachmentRef]:
        """Store the stream for the block's use; if the block raises (the request failed), a
        file this call stored is removed again: only a successful request keeps its file."""
        ref, created = self._put(stream, name)
        try:
            yield ref
        except BaseException:
            if created:
                self.path_of(ref.sha256).unlink(missing_ok=True)
            raise


def _safe_name(name: str) -> str:
    """The name as shown: its last path part; a name with control characters, or empty, or
    longer than NAME_LENGTH, is refused (422 naming `file`), never repaired."""
    return check_file_name("file", name)
