"""Evidence bundles: valid BagIt, verifiable offline by our verifier and by one written from
the README alone; one changed byte anywhere fails, naming where."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.evidence.bundle import verify_bundle
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import attach
from tests.integration.test_attachments import PDF, PNG
from tests.integration.test_merkle_log import independent_inclusion, independent_note_check


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def ten_events_two_attachments(api: Api) -> dict[str, object]:
    reviewer, approver = api.key(SELLER, "reviewer"), api.key(SELLER, "approver")
    inv = api.issue()  # 1
    ref = inv["invoice_id"]
    for path, body in [
        ("submissions", {}),
        ("submission-failures", {"reason_code": "net"}),
        ("submissions", {}),
        ("missing-reports", {}),
    ]:  # 2-5
        api.post(f"/v1/invoices/{ref}/{path}", body)
    app = api.post("/v1/reentry-applications", {"invoices": [ref], "reason": "补录"}).json()
    base = f"/v1/reentry-applications/{app['application_id']}"
    api.client.put(
        f"{base}/invoices/{ref}/fields", json={"fields": {"remarks": "补录"}}, headers=api.clerk
    )
    attach(api, app["application_id"], PDF, "发票.pdf")
    attach(api, app["application_id"], PNG, "截图.png")
    api.post(f"{base}/submission", {})
    api.post(f"{base}/review", {}, reviewer)
    api.post(f"{base}/approval", {}, approver)  # 6: re-entered
    for path, body in [
        ("missing-reports", {}),
        ("submissions", {}),
        ("acknowledgements", {"platform_ref": "SW"}),
        (
            "red-reversals",
            {
                "confirmation_number": "11010826112001615708",
                "red_invoice_key": "26112000000135119999",
                "scope": "partial",
                "reason_code": "04",
                "amount": "113.00",
            },
        ),
    ]:  # 7-10
        assert api.post(f"/v1/invoices/{ref}/{path}", body).status_code == 200, path
    return inv


def export(api: Api, invoice_ref: object, tmp_path: Path) -> Path:
    compliance = api.key(SELLER, "compliance")
    r = api.client.post(
        "/v1/evidence-bundles", json={"invoices": [invoice_ref]}, headers=compliance
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    path = tmp_path / "bundle.zip"
    path.write_bytes(r.content)
    return path


def independent_check(root: Path) -> int:
    """A verifier written only from the README: no fapiao-ledger code."""
    data = root / "data"
    vkey = (data / "keys" / "log.vkey").read_text().strip()
    size, tree_root = independent_note_check((data / "checkpoint.txt").read_text(), vkey)
    checked = 0
    for event_file in (data / "invoices").rglob("events/*.json"):
        entry = json.loads(event_file.read_bytes())
        proof = json.loads((event_file.parent.parent / "proofs" / event_file.name).read_bytes())
        state = base64.b64decode(entry["state_base64"])
        assert hashlib.sha256(state).hexdigest() == entry["leaf"]["state_sha256"]
        leaf = hashlib.sha256(b"\x00" + rfc8785.dumps(entry["leaf"])).digest()
        assert proof["tree_size"] == size
        assert independent_inclusion(
            proof["leaf_index"], size, leaf, [bytes.fromhex(p) for p in proof["proof"]], tree_root
        )
        checked += 1
    return checked


def test_a_bundle_of_ten_events_and_two_attachments_verifies_three_ways(
    api: Api, tmp_path: Path
) -> None:
    inv = ten_events_two_attachments(api)
    bundle = export(api, inv["invoice_key"], tmp_path)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path / "x")
    (root,) = list((tmp_path / "x").iterdir())
    tool = shutil.which("bagit.py") or str(Path(sys.executable).parent / "bagit.py")
    validated = subprocess.run(
        [sys.executable, tool, "--validate", str(root)], capture_output=True, text=True, check=False
    )
    assert validated.returncode == 0, validated.stderr
    events = sorted((root / "data" / "invoices").rglob("events/*.json"))
    assert len(events) == 10
    assert len(list((root / "data" / "attachments").iterdir())) == 2
    assert "发票证据包" in (root / "data" / "report.html").read_text()
    assert independent_check(root) == 10
    result = verify_bundle(bundle)
    assert result.failures == [] and (result.invoices, result.events) == (1, 10)
    admin = api.key(SELLER, "admin")
    assert any(e["action"] == "evidence-export" for e in api.get("/v1/access-log", admin).json())
    assert (
        api.client.post(
            "/v1/evidence-bundles", json={"invoices": [inv["invoice_id"]]}, headers=api.clerk
        ).status_code
        == 403
    )


def _flip(bundle: Path, member_suffix: str, out: Path) -> str:
    """Copy the zip with one byte changed in the first member ending with `member_suffix`."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        changed = ""
        for info in src.infolist():
            data = bytearray(src.read(info))
            if not changed and info.filename.endswith(member_suffix) and data:
                i = len(data) // 2
                data[i] = (data[i] + 1) % 256 if chr(data[i]).isalnum() else ord("A")
                changed = info.filename
            dst.writestr(info, bytes(data))
    assert changed, member_suffix
    return changed.split("/", 1)[1]


@pytest.mark.parametrize(
    "member",
    [
        "0.json",
        "checkpoint.txt",
        "state.json",
        "report.html",
        "manifest-sha256.txt",
        "bag-info.txt",
        "log.vkey",
    ],
)
def test_one_changed_byte_anywhere_fails_and_says_where(
    api: Api, tmp_path: Path, member: str
) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    bundle = export(api, inv["invoice_id"], tmp_path)
    suffix = member
    if member == "0.json":  # an event file
        with zipfile.ZipFile(bundle) as z:
            suffix = next(n for n in z.namelist() if "/events/" in n).rsplit("/", 1)[1]
    changed = _flip(bundle, suffix, tmp_path / "tampered.zip")
    result = verify_bundle(tmp_path / "tampered.zip")
    assert result.failures, changed
    assert any(changed in f or changed.rsplit("/", 1)[-1] in f for f in result.failures), (
        changed,
        result.failures,
    )
    assert io  # used by helpers


def test_the_cli_verifies_offline_with_a_trusted_key(api: Api, tmp_path: Path) -> None:
    from tests.test_cli import fapiao

    inv = api.issue()
    bundle = export(api, inv["invoice_id"], tmp_path)
    key = tmp_path / "trusted.vkey"
    key.write_text(api.client.get("/v1/checkpoints/keys").json()[0]["vkey"])
    ok = fapiao(
        "sqlite:////nonexistent/ledger.db",
        "evidence",
        "verify",
        str(bundle),
        "--public-key",
        str(key),
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK: 1 invoices" in ok.stdout and "the key you supplied" in ok.stdout
    _flip(bundle, "checkpoint.txt", tmp_path / "bad.zip")
    bad = fapiao(
        "sqlite:////nonexistent/ledger.db", "evidence", "verify", str(tmp_path / "bad.zip")
    )
    assert bad.returncode == 1 and "FAIL" in bad.stderr and "checkpoint.txt" in bad.stderr
