"""Content-addressed attachments: typed by content, stored once, refusals leave nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from infrastructure.remedies.attachment_store import AttachmentRejectedError, FileAttachmentStore

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
XML = "\ufeff<?xml version='1.0' encoding='UTF-8'?><EInvoice/>".encode()
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 64
MZ = b"MZ\x90\x00" + b"\x00" * 64


def ofd() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("OFD.xml", "<ofd:OFD/>")
        z.writestr("Doc_0/Document.xml", "<ofd:Document/>")
    return buffer.getvalue()


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "content,media_type",
    [
        (PDF, "application/pdf"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (XML, "application/xml"),
        (ofd(), "application/ofd"),
    ],
)
def test_allowed_types_are_recognised_by_content(
    tmp_path: Path, content: bytes, media_type: str
) -> None:
    store = FileAttachmentStore(tmp_path)
    ref = store.put(io.BytesIO(content), "scan.bin")
    assert (ref.media_type, ref.size, ref.name) == (media_type, len(content), "scan.bin")
    assert store.read(ref.sha256) == content


def test_the_same_file_is_stored_once(tmp_path: Path) -> None:
    store = FileAttachmentStore(tmp_path)
    a = store.put(io.BytesIO(PDF), "a.pdf")
    b = store.put(io.BytesIO(PDF), "copy-of-a.pdf")
    assert a.sha256 == b.sha256 and b.name == "copy-of-a.pdf"
    assert len(stored_files(tmp_path)) == 1


@pytest.mark.parametrize(
    "content,name,rule",
    [
        (MZ, "invoice.pdf", "attachment_type"),
        (ELF, "scan.png", "attachment_type"),
        (b"PK\x03\x04broken", "invoice.ofd", "attachment_type"),
        (b"", "empty.pdf", "attachment_empty"),
        (PDF + b"\x00" * 2048, "big.pdf", "attachment_size"),
    ],
)
def test_refused_files_leave_nothing_stored(
    tmp_path: Path, content: bytes, name: str, rule: str
) -> None:
    store = FileAttachmentStore(tmp_path, limit=1024)
    with pytest.raises(AttachmentRejectedError) as e:
        store.put(io.BytesIO(content), name)
    assert (e.value.field, e.value.rule) == ("file", rule)
    assert name in e.value.message
    assert stored_files(tmp_path) == []
