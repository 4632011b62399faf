"""Bodies and uploads over HTTP, on both stores: size refused before reading (JSON, forms, the
console's forms), inflated XLSX and OFD zips refused from their directory, an attachment kept
only when its request succeeds, and waits for a projection capped in number."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.remedies.attachment_store import FileAttachmentStore
from tests.builders import SELLER, a_draft, by
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import a_missing_invoice, attach
from tests.integration.test_attachments import PDF

MIB = 1024 * 1024


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _413(r: object) -> None:
    assert r.status_code == 413, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    assert r.json()["errors"][0]["field"] == "body"  # type: ignore[attr-defined]


def test_a_50_mib_json_body_is_refused_before_it_is_read(api: Api) -> None:
    before = api.events_stored()
    body = b'{"number": "' + b"1" * (50 * MIB) + b'"}'
    r = api.client.post(
        "/v1/invoices", content=body, headers={**api.clerk, "Content-Type": "application/json"}
    )
    _413(r)
    assert api.events_stored() == before


def test_a_body_without_content_length_is_cut_off_at_the_limit(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b" " * MIB

    r = api.client.post(
        "/v1/invoices", content=chunks(), headers={**api.clerk, "Content-Type": "application/json"}
    )
    _413(r)


def test_an_upload_over_its_routes_limit_is_refused(api: Api) -> None:
    r = api.client.post(
        "/v1/reconciliations",
        files={"file": ("export.csv", b"x" * (101 * MIB))},
        headers=api.clerk,
    )
    _413(r)


def test_the_consoles_forms_have_the_same_limit(api: Api) -> None:
    r = api.client.post(
        "/console/sign-in",
        data={"api_key": "x" * (2 * MIB), "csrf": "x"},
        follow_redirects=False,
    )
    _413(r)


def _xlsx_inflating_to(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/sharedStrings.xml", "w") as entry:
            chunk = b"<si><t>" + b"A" * (MIB - 16) + b"</t></si>"
            for _ in range(size // len(chunk) + 1):
                entry.write(chunk)
    return buffer.getvalue()


def test_an_xlsx_that_inflates_past_the_limit_is_refused_unread(api: Api) -> None:
    api.services.settings = api.services.settings.model_copy(update={"upload_inflated_limit_mb": 2})
    content = _xlsx_inflating_to(3 * MIB)
    assert len(content) < 64 * 1024  # small on the wire
    before = api.events_stored()
    r = api.client.post(
        "/v1/reconciliations", files={"file": ("export.xlsx", content)}, headers=api.clerk
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "file" and "inflate" in r.text
    assert api.events_stored() == before


def _ofd_inflating_to(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("OFD.xml", "<ofd:OFD/>")
        with z.open("Doc_0/big.bin", "w") as entry:
            for _ in range(size // MIB + 1):
                entry.write(b"\0" * MIB)
    return buffer.getvalue()


def test_an_ofd_that_inflates_past_ten_times_the_limit_is_refused_and_not_kept(
    tmp_path: Path,
) -> None:
    store = FileAttachmentStore(tmp_path, limit=MIB)
    with pytest.raises(Exception, match="inflates to more than 10 MiB"):
        store.put(io.BytesIO(_ofd_inflating_to(11 * MIB)), "bomb.ofd")
    assert _files(tmp_path) == []


def test_an_attachment_is_kept_only_when_its_request_succeeds(api: Api) -> None:
    root = api.services.attachments.root  # type: ignore[attr-defined]
    inv = a_missing_invoice(api)
    app = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "x"})
    base = f"/v1/reentry-applications/{app.json()['application_id']}"
    api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"remarks": "补录"}},
        headers=api.clerk,
    )
    assert attach(api, app.json()["application_id"], PDF, "a.pdf").status_code == 201  # type: ignore[attr-defined]
    kept = _files(root)
    assert len(kept) == 1
    assert api.post(f"{base}/submission", {}).status_code == 200
    other_pdf = PDF + b"% another file\n"
    refused = attach(api, app.json()["application_id"], other_pdf, "b.pdf")
    assert refused.status_code == 409, refused.text  # type: ignore[attr-defined]
    assert _files(root) == kept  # the refused request left nothing
    again = attach(api, app.json()["application_id"], PDF, "a.pdf")
    assert again.status_code == 409  # type: ignore[attr-defined]
    assert _files(root) == kept  # and a refused copy of a kept file does not remove it


def test_waits_for_a_projection_are_capped_in_number(services: Services) -> None:
    """With every waiting slot taken, a read that would wait is answered 503 at once."""
    with TestClient(create_app(services=services, run_workers=False)) as client:
        api = Api(client, services)
        issued = services.ledger.issue_invoice(SELLER, a_draft(), by())  # no runner applies it
        slots = services._waiters
        taken = 0
        while slots.acquire(blocking=False):
            taken += 1
        try:
            r = api.get(f"/v1/invoices/{issued.invoice_id}", consistent_after=issued.position)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert r.elapsed.total_seconds() < services.settings.consistent_read_timeout
        finally:
            for _ in range(taken):
                slots.release()
        services.worker("invoice_status").catch_up()
        r = api.get(f"/v1/invoices/{issued.invoice_id}", consistent_after=issued.position)
        assert r.status_code == 200


def test_console_form_fields_are_checked_like_json_strings(api: Api) -> None:
    r = api.client.post(
        "/console/sign-in", data={"api_key": "a\x00b", "csrf": "x"}, follow_redirects=False
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0] == {
        "field": "api_key",
        "rule": "control_characters",
        "message": "must not contain control characters (found U+0000)",
    }
