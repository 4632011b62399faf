"""Evidence bundles: valid BagIt 1.0, verifiable offline by our verifier and by one written from
the README alone (`independent_check`, no fapiao-ledger code). Everything a person reads is
rebuilt from the sealed bytes, every stream is proven complete up to the checkpoint, and the
signed manifest names every invoice: each tampering an attacker could do, BagIt manifests
rebuilt as they would, fails and says where."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.http.app import create_app
from infrastructure.bootstrap import Services, event_catalog
from infrastructure.evidence.bundle_verifier import (
    BundleVerifyReport,
    read_key_file,
    verify_bundle,
)
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import attach
from tests.integration.test_attachments import PDF, PNG
from tests.integration.test_merkle_log import (
    _h,
    independent_checkpoint,
    independent_inclusion,
    independent_signed_text,
)
from tests.test_cli import fapiao


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def ten_events_two_attachments(api: Api) -> dict[str, Any]:
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


def export(
    api: Api, invoices: list[Any], tmp_path: Path, name: str = "bundle.zip", **body: Any
) -> Path:
    compliance = api.key(SELLER, "compliance")
    r = api.client.post(
        "/v1/evidence-bundles", json={"invoices": invoices, **body}, headers=compliance
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    path = tmp_path / name
    path.write_bytes(r.content)
    return path


def trusted(api: Api) -> list[Any]:
    return read_key_file(
        "\n".join(k["vkey"] for k in api.client.get("/v1/checkpoints/keys").json())
    )


def verify(api: Api, bundle: Path, **kw: Any) -> BundleVerifyReport:
    return verify_bundle(bundle, event_catalog(), trusted(api), **kw)


# ---- an outside verifier, written from the README alone ---------------------------------------


def independent_consistency(
    m: int, n: int, first: bytes, second: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if m == n:
        return first == second and not proof
    path = list(proof)
    if m & (m - 1) == 0:
        path.insert(0, first)
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = _h(b"\x01" + c + fr), _h(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            sr = _h(b"\x01" + sr + c)
        fn //= 2
        sn //= 2
    return sn == 0 and fr == first and sr == second


def unpack(bundle: Path, into: Path) -> Path:
    with zipfile.ZipFile(bundle) as z:
        z.extractall(into)
    (root,) = list(into.iterdir())
    return root


def independent_check(root: Path, vkey: str) -> dict[str, int]:
    """Checks a bag as the README describes it: signatures, leaves, inclusion proofs, stream
    heads (versions 1..n, none later), the signed manifest, and consistency proofs."""
    data = root / "data"
    cp = independent_checkpoint((data / "checkpoint.txt").read_text(), vkey)
    title, line = independent_signed_text((data / "manifest.txt").read_text(), vkey).splitlines()
    assert title == "fapiao-ledger bundle manifest v1"
    manifest = json.loads(line)
    assert rfc8785.dumps(manifest) == line.encode()
    log = manifest["log"]
    assert (log["origin"], log["tree_size"], log["root"]) == (
        cp["origin"],
        cp["size"],
        base64.b64encode(cp["root"]).decode(),  # type: ignore[arg-type]
    )
    assert log["stream_heads"] == {
        "count": cp["heads_count"],
        "root": base64.b64encode(cp["heads_root"]).decode(),  # type: ignore[arg-type]
    }
    counts = {"invoices": 0, "cases": 0, "events": 0}
    for kind in ("invoices", "cases"):
        listed = {e["stream_id"]: e for e in manifest[kind]}
        folders = sorted((data / kind).iterdir()) if (data / kind).exists() else []
        assert {f.name for f in folders} == set(listed)
        for folder in folders:
            versions, last = [], None
            for event_file in sorted(folder.glob("events/*.json"), key=lambda p: int(p.stem)):
                entry = json.loads(event_file.read_bytes())
                leaf = entry["leaf"]
                proof = json.loads((folder / "proofs" / event_file.name).read_bytes())
                state = base64.b64decode(entry["state_base64"])
                assert hashlib.sha256(state).hexdigest() == leaf["state_sha256"]
                assert leaf["stream_id"] == folder.name and leaf["tenant"] == SELLER
                assert proof["tree_size"] == cp["size"]
                assert independent_inclusion(
                    proof["leaf_index"],
                    cp["size"],  # type: ignore[arg-type]
                    _h(b"\x00" + rfc8785.dumps(leaf)),
                    [bytes.fromhex(p) for p in proof["proof"]],
                    cp["root"],  # type: ignore[arg-type]
                )
                versions.append(leaf["stream_version"])
                last = leaf
                counts["events"] += 1
            head_doc = json.loads((folder / "head.json").read_bytes())
            head = head_doc["head"]
            assert head_doc["tree_size"] == cp["heads_count"]
            assert independent_inclusion(
                head_doc["leaf_index"],
                cp["heads_count"],  # type: ignore[arg-type]
                _h(b"\x00" + rfc8785.dumps(head)),
                [bytes.fromhex(p) for p in head_doc["proof"]],
                cp["heads_root"],  # type: ignore[arg-type]
            )
            assert last is not None and head["stream_id"] == folder.name
            assert versions == list(range(1, head["last_version"] + 1))  # complete, none later
            assert last["position"] == head["last_position"]
            entry_ = listed[folder.name]
            assert (entry_["last_version"], entry_["last_position"]) == (
                head["last_version"],
                head["last_position"],
            )
            counts[kind] += 1
    files = (
        {p.name for p in (data / "attachments").iterdir()}
        if (data / "attachments").exists()
        else set()
    )
    assert files == set(manifest["attachments"])
    for name in files:
        assert hashlib.sha256((data / "attachments" / name).read_bytes()).hexdigest() == name
    if manifest["known_checkpoint"] is not None:
        m = manifest["known_checkpoint"]["tree_size"]
        held = independent_checkpoint((data / "checkpoints" / f"{m}.txt").read_text(), vkey)
        proof = json.loads((data / "consistency" / f"{m}-{cp['size']}.json").read_bytes())
        assert independent_consistency(
            m,
            cp["size"],  # type: ignore[arg-type]
            held["root"],  # type: ignore[arg-type]
            cp["root"],  # type: ignore[arg-type]
            [bytes.fromhex(p) for p in proof["proof"]],
        )
    return counts


def test_a_bundle_of_ten_events_and_two_attachments_verifies_three_ways(
    api: Api, tmp_path: Path
) -> None:
    inv = ten_events_two_attachments(api)
    bundle = export(api, [inv["invoice_key"]], tmp_path)
    root = unpack(bundle, tmp_path / "x")
    tool = shutil.which("bagit.py") or str(Path(sys.executable).parent / "bagit.py")
    validated = subprocess.run(
        [sys.executable, tool, "--validate", str(root)], capture_output=True, text=True, check=False
    )
    assert validated.returncode == 0, validated.stderr
    assert (root / "bagit.txt").read_text().startswith("BagIt-Version: 1.0\n")
    assert len(sorted((root / "data" / "invoices").rglob("events/*.json"))) == 10
    assert len(list((root / "data" / "attachments").iterdir())) == 2
    report = (root / "data" / "report.html").read_text()
    for shown in (
        "发票证据包",
        "北京云帆科技有限公司",
        SELLER,
        "1130.00",
        "红字冲销 Red-letter reversal",
    ):
        assert shown in report, shown
    assert "BL-" in report and "+08:00" in report
    vkey = api.client.get("/v1/checkpoints/keys").json()[0]["vkey"]
    assert independent_check(root, vkey) == {"invoices": 1, "cases": 1, "events": 10 + 7}
    result = verify(api, bundle)
    assert result.failures == []
    assert (result.invoices, result.cases, result.events, result.attachments) == (1, 1, 17, 2)
    assert result.trusted
    admin = api.key(SELLER, "admin")
    exports = [
        e for e in api.get("/v1/access-log", admin).json() if e["action"] == "evidence-export"
    ]
    assert len(exports) == 1
    assert (
        api.client.post(
            "/v1/evidence-bundles", json={"invoices": [inv["invoice_id"]]}, headers=api.clerk
        ).status_code
        == 403
    )


def test_the_report_is_the_same_bytes_for_the_same_events(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    key = {"Idempotency-Key": "export-1"}
    compliance = api.key(SELLER, "compliance")
    first = api.client.post(
        "/v1/evidence-bundles",
        json={"invoices": [inv["invoice_id"]]},
        headers={**compliance, **key},
    )
    again = api.client.post(
        "/v1/evidence-bundles",
        json={"invoices": [inv["invoice_id"]]},
        headers={**compliance, **key},
    )
    assert first.status_code == again.status_code == 200
    assert first.content == again.content and again.headers["x-fapiao-replayed"] == "true"
    admin = api.key(SELLER, "admin")
    exports = [
        e for e in api.get("/v1/access-log", admin).json() if e["action"] == "evidence-export"
    ]
    assert len(exports) == 1  # the repeat recorded nothing
    other_body = api.client.post(
        "/v1/evidence-bundles",
        json={"invoices": [inv["invoice_key"]]},
        headers={**compliance, **key},
    )
    assert other_body.status_code == 422 and "idempotency" in other_body.json()["type"]


def test_the_same_invoice_twice_is_one_invoice(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    bundle = export(api, [inv["invoice_id"], inv["invoice_key"], inv["invoice_id"]], tmp_path)
    result = verify(api, bundle)
    assert result.failures == [] and result.invoices == 1


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
        "manifest.txt",
        "head.json",
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
    bundle = export(api, [inv["invoice_id"]], tmp_path)
    suffix = member
    if member == "0.json":  # an event file
        with zipfile.ZipFile(bundle) as z:
            suffix = next(n for n in z.namelist() if "/events/" in n).rsplit("/", 1)[1]
    changed = _flip(bundle, suffix, tmp_path / "tampered.zip")
    result = verify_bundle(tmp_path / "tampered.zip", event_catalog())
    assert result.failures, changed
    assert any(changed in f or changed.rsplit("/", 1)[-1] in f for f in result.failures), (
        changed,
        result.failures,
    )


# ---- tampering, with the BagIt manifests rebuilt as an attacker would --------------------------


def rebag(root: Path) -> None:
    """Recompute manifest-sha256.txt, Payload-Oxum and tagmanifest-sha256.txt (what anyone can
    do, since BagIt manifests are not signed)."""
    payload = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n"
        for p in payload
    ]
    (root / "manifest-sha256.txt").write_text("".join(lines))
    octets = sum(p.stat().st_size for p in payload)
    info = [
        line
        for line in (root / "bag-info.txt").read_text().splitlines()
        if not line.startswith("Payload-Oxum")
    ]
    info.append(f"Payload-Oxum: {octets}.{len(payload)}")
    (root / "bag-info.txt").write_text("\n".join(info) + "\n")
    tags = ["bag-info.txt", "bagit.txt", "manifest-sha256.txt"]
    (root / "tagmanifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256((root / t).read_bytes()).hexdigest()}  {t}\n" for t in tags)
    )


def rezip(root: Path, out: Path, at_root: bool = False) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                name = path.relative_to(root if at_root else root.parent).as_posix()
                z.write(path, name)
    return out


def tampered(bundle: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    work = tmp_path / "attack"
    if work.exists():
        shutil.rmtree(work)
    root = unpack(bundle, work)
    change(root / "data")
    rebag(root)
    return rezip(root, tmp_path / "tampered.zip")


def edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    doc = json.loads(path.read_bytes())
    edit(doc)
    path.write_bytes(rfc8785.dumps(doc))


def event_files(data: Path, kind: str = "invoices") -> list[Path]:
    return sorted((data / kind).rglob("events/*.json"), key=lambda p: int(p.stem))


def with_type(name: str) -> Callable[[Path], Path]:
    def pick(data: Path) -> Path:
        return next(
            p for p in event_files(data) if json.loads(p.read_bytes())["decoded"]["type"] == name
        )

    return pick


def _set(path: list[str], value: Any) -> Callable[[Any], None]:
    def edit(doc: Any) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return edit


ATTACKS: dict[str, tuple[Callable[[Path], None], str]] = {
    "decoded total": (
        lambda d: edit_json(with_type("Issued")(d), _set(["decoded", "data", "total"], "11.30")),
        'decoded.data.total: the file says "11.30", the sealed state says "1130.00"',
    ),
    "decoded actor": (
        lambda d: edit_json(with_type("Submitted")(d), _set(["decoded", "actor"], "key:boss")),
        'decoded.actor: the file says "key:boss"',
    ),
    "decoded type": (
        lambda d: edit_json(
            with_type("MarkedMissing")(d), _set(["decoded", "type"], "Acknowledged")
        ),
        'decoded.type: the file says "Acknowledged", the sealed state says "MarkedMissing"',
    ),
    "state.json": (
        lambda d: edit_json(
            next(d.glob("invoices/*/state.json")), _set(["status"], "acknowledged")
        ),
        'state.json: state.status: the file says "acknowledged", replaying the events gives '
        '"missing"',
    ),
    "report.html": (
        lambda d: (d / "report.html").write_text(
            (d / "report.html")
            .read_text()
            .replace("平台缺失 Marked missing", "平台已确认 Acknowledged")
        ),
        "data/report.html: differs from the report rebuilt from the sealed events",
    ),
    "an event file's bytes": (
        lambda d: edit_json(
            with_type("Submitted")(d),
            _set(["state_base64"], base64.b64encode(b'{"attempt": 9}').decode()),
        ),
        "the state bytes do not match leaf.state_sha256",
    ),
    "an extra file": (
        lambda d: (d / "note-from-us.txt").write_text("all fine"),
        "data/note-from-us.txt: not part of a bundle",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_readable_file_is_rebuilt_and_a_changed_one_is_named(
    api: Api, tmp_path: Path, attack: str
) -> None:
    inv = api.issue()
    for path in ("submissions", "missing-reports"):
        api.post(f"/v1/invoices/{inv['invoice_id']}/{path}", {})
    bundle = export(api, [inv["invoice_id"]], tmp_path)
    change, expected = ATTACKS[attack]
    result = verify(api, tampered(bundle, tmp_path, change))
    assert any(expected in f for f in result.failures), result.failures
    assert not any(f.startswith("BagIt") for f in result.failures)  # the manifests were rebuilt


def test_a_deleted_last_event_is_caught_by_the_stream_head(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    before = unpack(export(api, [inv["invoice_id"]], tmp_path, "before.zip"), tmp_path / "b")
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {})
    bundle = export(api, [inv["invoice_id"]], tmp_path)
    old_state = next((before / "data").glob("invoices/*/state.json")).read_bytes()

    def drop_last(data: Path) -> None:
        last = event_files(data)[-1]
        (last.parent.parent / "proofs" / last.name).unlink()
        last.unlink()
        next(data.glob("invoices/*/state.json")).write_bytes(old_state)

    result = verify(api, tampered(bundle, tmp_path, drop_last))
    assert any(
        "the log's head is version 3 at position" in f and "holds versions 1..2" in f
        for f in result.failures
    ), result.failures


def test_an_invoice_dropped_from_a_bundle_is_caught_by_the_signed_manifest(
    api: Api, tmp_path: Path
) -> None:
    a, b = api.issue(), api.issue()
    bundle = export(api, [a["invoice_id"], b["invoice_id"]], tmp_path)

    def drop(data: Path) -> None:
        shutil.rmtree(data / "invoices" / b["invoice_id"])

    result = verify(api, tampered(bundle, tmp_path, drop))
    assert any(
        f"lists invoice {b['invoice_id']} ({b['invoice_key']}); the bundle has no "
        f"data/invoices/{b['invoice_id']} (dropped?)" in f
        for f in result.failures
    ), result.failures


def test_a_rollback_to_an_older_checkpoint_is_caught(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    older = export(api, [inv["invoice_id"]], tmp_path, "older.zip")
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    newer = export(api, [inv["invoice_id"]], tmp_path, "newer.zip")
    old_root = unpack(older, tmp_path / "o")

    def roll_back(data: Path) -> None:  # older signed checkpoint and events, newer manifest
        shutil.copy(old_root / "data" / "checkpoint.txt", data / "checkpoint.txt")
        shutil.rmtree(data / "invoices")
        shutil.copytree(old_root / "data" / "invoices", data / "invoices")

    result = verify(api, tampered(newer, tmp_path, roll_back))
    assert any("signed for another checkpoint" in f for f in result.failures), result.failures
    held = unpack(newer, tmp_path / "n") / "data" / "checkpoint.txt"
    whole_old = verify(api, older, known_checkpoint=held.read_text())
    assert any("older than the one you hold" in f for f in whole_old.failures), whole_old.failures


def test_a_duplicate_zip_entry_or_an_unsafe_name_is_refused(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    bundle = export(api, [inv["invoice_id"]], tmp_path)
    with zipfile.ZipFile(bundle) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    event = next(n for n, _ in members if "/events/" in n)
    dup = tmp_path / "dup.zip"
    with zipfile.ZipFile(dup, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for name, data in members:
            if name == event:  # a tampered first copy, then the genuine one
                z.writestr(name, data.replace(b"digital_special", b"digital_ordinary"))
            z.writestr(name, data)
    result = verify(api, dup)
    assert result.failures == [f"zip entry {event!r} appears twice (duplicate name)"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        for name, data in members:
            z.writestr(name, data)
        z.writestr("../outside.txt", b"x")
    assert verify(api, evil).failures == [
        "zip entry '../outside.txt': '.', '..' or an empty part in its path"
    ]


def test_a_bag_at_the_zip_root_verifies(api: Api, tmp_path: Path) -> None:
    inv = api.issue()
    root = unpack(export(api, [inv["invoice_id"]], tmp_path), tmp_path / "x")
    result = verify(api, rezip(root, tmp_path / "flat.zip", at_root=True))
    assert result.failures == []


# ---- trust, keys, known checkpoints ----------------------------------------------------------


def test_the_cli_verifies_with_trusted_keys_and_says_untrusted_without(
    api: Api, tmp_path: Path
) -> None:
    inv = api.issue()
    api.services.merkle.signer.rotate()  # two keys published; the new one signs
    bundle = export(api, [inv["invoice_id"]], tmp_path)
    keys = tmp_path / "trusted.vkeys"
    keys.write_text(
        "# the log's keys\n"
        + "\n".join(k["vkey"] for k in api.client.get("/v1/checkpoints/keys").json())
        + "\n"
    )
    nowhere = "sqlite:////nonexistent/ledger.db"
    ok = fapiao(nowhere, "evidence", "verify", str(bundle), "--public-key", str(keys))
    assert ok.returncode == 0, ok.stderr
    assert "OK: 1 invoices" in ok.stdout and "a key you supplied" in ok.stdout
    alone = fapiao(nowhere, "evidence", "verify", str(bundle))
    assert alone.returncode == 3
    assert "UNTRUSTED: signature checked only against the bundle's own key" in alone.stderr
    stranger = tmp_path / "stranger.vkey"
    stranger.write_text(
        "someone.else/key+9a1b2c3d+" + base64.b64encode(b"\x01" + b"\x02" * 32).decode() + "\n"
    )
    bad_key = fapiao(nowhere, "evidence", "verify", str(bundle), "--public-key", str(stranger))
    assert bad_key.returncode == 2 and "the key id does not match" in bad_key.stderr
    root = unpack(bundle, tmp_path / "x")
    (root / "data" / "checkpoint.txt").write_text("not a note\n")
    bad = fapiao(nowhere, "evidence", "verify", str(rezip(root, tmp_path / "bad.zip")))
    assert bad.returncode == 1 and "FAIL" in bad.stderr and "checkpoint.txt" in bad.stderr


def test_a_bundle_proves_it_extends_the_checkpoint_an_inspector_holds(
    api: Api, tmp_path: Path
) -> None:
    inv = api.issue()
    api.services.bring_up_to_date("seal")
    held = api.services.merkle.checkpoint_now()
    assert held is not None
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.issue()
    api.issue()
    bundle = export(api, [inv["invoice_id"]], tmp_path, since_checkpoint=held["note"])
    root = unpack(bundle, tmp_path / "x")
    vkey = api.client.get("/v1/checkpoints/keys").json()[0]["vkey"]
    independent_check(root, vkey)
    result = verify(api, bundle, known_checkpoint=held["note"])
    assert result.failures == [] and result.known_size == held["tree_size"]
    plain = export(api, [inv["invoice_id"]], tmp_path, "plain.zip")
    without = verify(api, plain, known_checkpoint=held["note"])
    assert any(
        "nothing shows this log extends the checkpoint you hold" in f for f in without.failures
    )
    forged = held["note"].replace(
        held["note"].split("\n")[2], base64.b64encode(b"\0" * 32).decode()
    )
    compliance = api.key(SELLER, "compliance")
    r = api.client.post(
        "/v1/evidence-bundles",
        json={"invoices": [inv["invoice_id"]], "since_checkpoint": forged},
        headers=compliance,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since_checkpoint"


def test_the_verifier_never_imports_a_module_a_bundle_names(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9, item 7: only the project's own topics are resolved."""
    marker = tmp_path / "imported"
    module = f"fapiao_evil_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Boom:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    bundle = export(api, [inv["invoice_id"]], tmp_path)

    def evil_topic(data: Path) -> None:
        edit_json(with_type("Submitted")(data), _set(["leaf", "topic"], f"{module}:Boom"))

    def evil_aggregate(data: Path) -> None:
        def edit(doc: Any) -> None:
            state = json.loads(base64.b64decode(doc["state_base64"]))
            state["originator_topic"] = f"{module}:Boom"
            raw = json.dumps(state).encode()
            doc["state_base64"] = base64.b64encode(raw).decode()
            doc["leaf"]["state_sha256"] = hashlib.sha256(raw).hexdigest()

        edit_json(with_type("Issued")(data), edit)

    for change, expected in (
        (evil_topic, f"event topic '{module}:Boom' is not one of fapiao-ledger's event topics"),
        (evil_aggregate, f"aggregate topic '{module}:Boom' is not one of fapiao-ledger's"),
    ):
        result = verify(api, tampered(bundle, tmp_path, change))
        assert any(expected in f for f in result.failures), result.failures
        assert not marker.exists() and module not in sys.modules


def test_the_catalog_knows_every_aggregate_of_the_domain() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "domain"
    declared = {
        node.name
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any("BaseAggregate" in ast.unparse(b) for b in node.bases)
    }
    assert declared == {a.__name__ for a in event_catalog().aggregates.values()}


# ---- exports the ledger cannot stand behind are refused ---------------------------------------


def test_export_is_refused_while_the_ledger_does_not_match_its_seal(
    api: Api, tmp_path: Path
) -> None:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.services.bring_up_to_date("seal")
    pg = api.services.settings.is_postgres
    table = "ledger_events" if pg else "stored_events"
    with api.services.write_engine.begin() as conn:
        if pg:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            conn.execute(
                text(f"UPDATE {table} SET state = '\\x7b7d'::bytea WHERE notification_id = 2")
            )
        else:
            conn.execute(text("DROP TRIGGER stored_events_no_update"))
            conn.execute(text(f"UPDATE {table} SET state = X'7b7d' WHERE rowid = 2"))
    compliance = api.key(SELLER, "compliance")
    r = api.client.post(
        "/v1/evidence-bundles", json={"invoices": [inv["invoice_id"]]}, headers=compliance
    )
    assert r.status_code == 409, r.text
    assert "position 2: the stored event differs from its sealed leaf" in r.json()["detail"]
    cli = fapiao(
        api.services.settings,
        "evidence",
        "export",
        "--tenant",
        SELLER,
        "--invoice",
        inv["invoice_id"],
        "--out",
        str(tmp_path / "x.zip"),
    )
    assert cli.returncode == 2 and cli.stderr.strip().count("\n") == 0
    assert "does not match its seal" in cli.stderr and not (tmp_path / "x.zip").exists()


def test_a_cli_export_is_in_the_access_log_and_another_tenant_gets_404(
    api: Api, tmp_path: Path
) -> None:
    inv = api.issue()
    out = tmp_path / "cli.zip"
    cli = fapiao(
        api.services.settings,
        "evidence",
        "export",
        "--tenant",
        SELLER,
        "--invoice",
        inv["invoice_key"],
        "--invoice",
        inv["invoice_id"],
        "--out",
        str(out),
    )
    assert cli.returncode == 0, cli.stderr
    assert "1 invoices" in cli.stdout
    admin = api.key(SELLER, "admin")
    (entry,) = [
        e for e in api.get("/v1/access-log", admin).json() if e["action"] == "evidence-export"
    ]
    assert entry["actor"].startswith("cli:")
    assert verify(api, out).failures == []
    held = tmp_path / "held.txt"  # the inspector kept the checkpoint of that bundle
    held.write_text(unpack(out, tmp_path / "c").joinpath("data", "checkpoint.txt").read_text())
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    later = tmp_path / "later.zip"
    cli = fapiao(
        api.services.settings,
        "evidence",
        "export",
        "--tenant",
        SELLER,
        "--status",
        "submitted",
        "--since-checkpoint",
        str(held),
        "--out",
        str(later),
    )
    assert cli.returncode == 0, cli.stderr
    keys = tmp_path / "keys.txt"
    keys.write_text(fapiao(api.services.settings, "ledger", "keys").stdout)
    checked = fapiao(
        "sqlite:////nonexistent/ledger.db",
        "evidence",
        "verify",
        str(later),
        "--public-key",
        str(keys),
        "--known-checkpoint",
        str(held),
    )
    assert checked.returncode == 0, checked.stderr
    assert "it extends the checkpoint you hold" in checked.stdout
    foreign = api.client.post(
        "/v1/evidence-bundles", json={"invoices": [inv["invoice_id"]]}, headers=api.other
    )
    assert foreign.status_code == 404  # another tenant's auditor


def test_a_bundle_read_two_streams_at_a_time_has_the_bytes_of_one_read_at_once(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Export reads and writes its streams a batch at a time and writes report.html as they go
    # by (a case's number in the sections of the invoices it names, though the case's files
    # come after theirs): the batch size changes nothing in the bytes, which verify.
    from infrastructure.evidence import bundle as bundle_module

    ids = [api.issue()["invoice_id"] for _ in range(5)]
    for ref in (ids[0], ids[3]):
        api.post(f"/v1/invoices/{ref}/submissions", {})
        assert api.post(f"/v1/invoices/{ref}/missing-reports", {}).status_code == 200
    case = api.post(
        "/v1/reentry-applications", {"invoices": [ids[3], ids[0]], "reason": "补录"}
    ).json()
    api.post(f"/v1/invoices/{ids[1]}/submissions", {})
    compliance = {**api.key(SELLER, "compliance"), "Idempotency-Key": "batches"}

    def post() -> bytes:
        r = api.client.post("/v1/evidence-bundles", json={"invoices": ids}, headers=compliance)
        assert r.status_code == 200, r.text
        return r.content

    monkeypatch.setattr(bundle_module, "STREAMS_PER_BATCH", 2)
    small = post()
    monkeypatch.setattr(bundle_module, "STREAMS_PER_BATCH", 10_000)
    large = post()  # the same key: the first bundle written again, read all at once
    assert small == large
    path = tmp_path / "bundle.zip"
    path.write_bytes(small)
    result = verify(api, path)
    assert result.failures == [] and (result.invoices, result.cases) == (5, 1)
    with zipfile.ZipFile(path) as z:
        report = next(z.read(n) for n in z.namelist() if n.endswith("data/report.html")).decode()
    sections = report.split("<h2>")[1:]
    number = str(case["number"])
    naming = [s for s in sections if s.startswith("发票") and number in s]
    assert len(naming) == 2 and any(s.startswith("案件") and number in s for s in sections)


def test_workers_check_a_bundle_as_one_process_does(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forked workers check the invoice streams a slice at a time; the report (failures in
    # their order, every check's list, the counts) is the one a single process gives, on a
    # sound bundle and on one damaged in streams of several slices.
    from dataclasses import asdict

    from infrastructure.evidence import bundle_verifier

    ids = [api.issue()["invoice_id"] for _ in range(7)]
    for ref in ids[::2]:
        api.post(f"/v1/invoices/{ref}/submissions", {})
    assert api.post(f"/v1/invoices/{ids[2]}/missing-reports", {}).status_code == 200
    api.post("/v1/reentry-applications", {"invoices": [ids[2]], "reason": "补录"})
    bundle = export(api, ids, tmp_path)
    monkeypatch.setattr(bundle_verifier, "PARALLEL_FROM", 2)
    monkeypatch.setattr(bundle_verifier, "SLICE", 2)

    def damage(data: Path) -> None:
        folders = sorted((data / "invoices").iterdir())
        edit_json(next(folders[1].glob("events/*.json")), _set(["decoded", "actor"], "key:boss"))
        edit_json(folders[3] / "state.json", _set(["status"], "acknowledged"))
        event_files(data)[-1].unlink()
        (folders[5] / "events" / "note.txt").write_text("stray")
        (folders[6] / "head.json").unlink()
        (data / "invoices" / "not-a-stream").mkdir()
        (data / "invoices" / "not-a-stream" / "state.json").write_text("{}")

    damaged = tampered(bundle, tmp_path, damage)
    for path, sound in ((bundle, True), (damaged, False)):
        alone = verify(api, path)
        together = verify(api, path, workers=2)
        assert (alone.workers, together.workers) == (1, 2)
        assert asdict(together) | {"workers": 1} == asdict(alone)
        assert (alone.invoices, alone.cases) == (7, 1)
        assert bool(alone.failures) is not sound, alone.failures
    # What the damage is named by, in the order one process names it.
    assert len(alone.failures) >= 6 and not any(f.startswith("BagIt") for f in alone.failures)
    assert any('decoded.actor: the file says "key:boss"' in f for f in alone.failures)
    assert any("not-a-stream: not a stream id" in f for f in alone.failures)


def test_workers_raise_what_one_process_raises_on_a_damaged_zip(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infrastructure.evidence import bundle_verifier

    ids = [api.issue()["invoice_id"] for _ in range(5)]
    bundle = export(api, ids, tmp_path)
    monkeypatch.setattr(bundle_verifier, "PARALLEL_FROM", 2)
    monkeypatch.setattr(bundle_verifier, "SLICE", 1)
    with zipfile.ZipFile(bundle) as z:
        member = [i for i in z.infolist() if i.filename.endswith("/state.json")][3]
    raw = bytearray(bundle.read_bytes())
    # A byte of the member's data changed in place: the directory's CRC-32 no longer holds.
    at = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + 5
    raw[at] ^= 0xFF
    broken = tmp_path / "broken.zip"
    broken.write_bytes(bytes(raw))
    raised = []
    for workers in (1, 2):
        with pytest.raises(zipfile.BadZipFile) as e:
            verify(api, broken, workers=workers)
        raised.append(str(e.value))
    assert raised[0] == raised[1] and member.filename in raised[0]


def test_a_worker_that_dies_fails_the_verify_and_leaves_nothing_waiting(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed while checking (out of memory, say): the verify raises, it does not
    # wait forever for the slice that worker held.
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from infrastructure.evidence import bundle_verifier

    bundle = export(api, [api.issue()["invoice_id"] for _ in range(4)], tmp_path)
    monkeypatch.setattr(bundle_verifier, "PARALLEL_FROM", 2)
    monkeypatch.setattr(bundle_verifier, "SLICE", 1)

    def killed(self: Any, sids: list[str], job: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)  # only workers check slices this way

    monkeypatch.setattr(bundle_verifier._Verifier, "checked_slice", killed)
    with pytest.raises(BrokenProcessPool):
        verify(api, bundle, workers=2)
    assert verify(api, bundle).failures == []  # and one process still verifies it


def test_the_cli_takes_workers_within_bounds(api: Api, tmp_path: Path) -> None:
    bundle = export(api, [api.issue()["invoice_id"]], tmp_path)
    nowhere = "sqlite:////nonexistent/ledger.db"
    ok = fapiao(nowhere, "evidence", "verify", str(bundle), "--workers", "3")
    assert ok.returncode == 3 and "OK: 1 invoices" in ok.stdout, ok.stderr  # 3: untrusted
    for bad in ("0", "65", "many"):
        refused = fapiao(nowhere, "evidence", "verify", str(bundle), "--workers", bad)
        assert refused.returncode == 2 and "--workers" in refused.stderr, refused.stderr
    with pytest.raises(ValueError, match="workers: 0"):
        verify(api, bundle, workers=0)
