"""Attachments as evidence: what an event records about a file (never the bytes themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALLOWED_TYPES = {
    "application/pdf": "PDF",
    "application/ofd": "OFD",
    "application/xml": "XML",
    "image/jpeg": "JPEG",
    "image/png": "PNG",
}


@dataclass(frozen=True)
class AttachmentRef:
    """A stored file, by content: its SHA-256, the name it came with, its type and size."""

    sha256: str
    name: str
    media_type: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttachmentRef:
        return cls(d["sha256"], d["name"], d["media_type"], int(d["size"]))
