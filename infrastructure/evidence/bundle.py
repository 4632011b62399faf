"""Evidence bundles: a BagIt (RFC 8493) zip per invoice or query that a third party can verify
offline, and the offline verifier (`fapiao evidence verify`), which needs no database.

Layout (all JSON is RFC 8785 canonical; hashes are hex):

    bagit.txt, bag-info.txt, manifest-sha256.txt, tagmanifest-sha256.txt
    data/README.txt                  how to verify, step by step
    data/report.html                 timeline per invoice, Chinese and English
    data/checkpoint.txt              the signed checkpoint (C2SP signed note)
    data/keys/log.vkey, log.pem      the log's public key (verify against one you trust)
    data/invoices/<id>/state.json    the invoice replayed from its events (derived)
    data/invoices/<id>/events/<position>.json
        {"leaf": {position, recorded_at, state_sha256, stream_id, stream_version, topic},
         "state_base64": <the stored state bytes>, "decoded": <readable fields>}
    data/invoices/<id>/proofs/<position>.json   {"leaf_index", "tree_size", "proof": [hex]}
    data/attachments/<sha256>        files referenced by the invoice's cases
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import bagit
import rfc8785
from eventsourcing.persistence import StoredEvent
from sqlalchemy import select

from application.evidence.leaf_encoding import leaf_bytes
from application.invoices.ledger import InvoiceLedger, _jsonable
from domain.evidence import merkle
from domain.evidence.checkpoint import parse_note
from domain.invoices.invoice import Invoice
from infrastructure.bootstrap import Services
from infrastructure.clock import SystemClock
from infrastructure.evidence.checkpoint_signer import verify_note_signature
from infrastructure.store.tables import cases

README = """fapiao-ledger evidence bundle / 发票台账证据包

How to verify (no fapiao-ledger needed; any BagIt, RFC 9162 and Ed25519 tools will do):
1. BagIt: every file's SHA-256 matches manifest-sha256.txt (e.g. `bagit.py --validate`).
2. For each data/invoices/<id>/events/<position>.json: SHA-256 of base64-decoded
   "state_base64" equals leaf.state_sha256; the leaf bytes are the RFC 8785 (JCS) JSON of
   "leaf"; the leaf hash is SHA-256(0x00 || leaf bytes).
3. With proofs/<position>.json, check the RFC 9162 inclusion proof of that leaf hash at
   leaf_index in a tree of tree_size against the root in checkpoint.txt.
4. checkpoint.txt is a C2SP signed note (origin, size, base64 root; then signature lines).
   Verify the Ed25519 signature over the body (the three lines and their newlines) with a log
   key you obtained independently; keys/log.vkey is the key as published by the log.
5. Replaying the decoded events in version order gives state.json (marked derived).
"""


def _dumps(value: Any) -> bytes:
    return rfc8785.dumps(_jsonable(value))


def _state(invoice: Invoice) -> dict[str, Any]:
    return {k.lstrip("_"): _jsonable(v) for k, v in vars(invoice).items() if k != "_pending_events"}


@dataclass
class BundleReport:
    invoices: int
    events: int
    attachments: int
    tree_size: int
    path: Path


def export_bundle(
    services: Services,
    tenant_id: str,
    invoice_ids: Sequence[UUID],
    out: Path,
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    """Write the bundle for these invoices (streamed: one invoice at a time) to `out` (.zip)."""
    services.bring_up_to_date("cases")  # which cases (and attachments) name each invoice
    services.bring_up_to_date("seal")
    checkpoint = services.merkle.checkpoint_now()
    if checkpoint is None:
        raise LookupError("the ledger is empty: nothing to prove")
    size = int(checkpoint["tree_size"])
    with tempfile.TemporaryDirectory(prefix="fapiao-bundle-") as tmp:
        root = Path(tmp) / "bundle"
        (root / "keys").mkdir(parents=True)
        (root / "checkpoint.txt").write_text(checkpoint["note"], encoding="utf-8")
        key = next(
            k for k in services.merkle.signer.public_keys() if k.name == checkpoint["key_name"]
        )
        (root / "keys" / "log.vkey").write_text(key.vkey + "\n", encoding="utf-8")
        (root / "keys" / "log.pem").write_text(key.pem(), encoding="utf-8")
        (root / "README.txt").write_text(README, encoding="utf-8")
        timeline: list[tuple[str, list[Any]]] = []
        events_n, attachments = 0, set()
        tree, index_of = services.merkle.tree(size)
        attachments_of = _case_attachments(services, tenant_id)
        head = max(index_of) if index_of else 0
        for n, invoice_id in enumerate(invoice_ids, start=1):
            current = services.ledger.get_invoice_state(tenant_id, invoice_id)  # or 404
            folder = root / "invoices" / str(invoice_id)
            (folder / "events").mkdir(parents=True)
            (folder / "proofs").mkdir()
            # Only what the checkpoint covers; anything recorded later goes in a later bundle.
            rows = [
                r for r in services.ledger.event_log.select_stream(invoice_id) if r.position <= head
            ]
            views = services.ledger.event_views(rows)
            last = rows[-1].originator_version
            invoice = (
                current
                if last == current.version
                else services.ledger.repository.get(invoice_id, version=last)
            )
            (folder / "state.json").write_bytes(_dumps({"derived": True, **_state(invoice)}))
            for row, view in zip(rows, views, strict=True):
                leaf = json.loads(leaf_bytes(row))
                (folder / "events" / f"{row.position}.json").write_bytes(
                    _dumps(
                        {
                            "leaf": leaf,
                            "state_base64": base64.b64encode(row.state).decode(),
                            "decoded": vars(view),
                        }
                    )
                )
                index = index_of[row.position]
                proof = tree.inclusion_proof(index)
                (folder / "proofs" / f"{row.position}.json").write_bytes(
                    _dumps(
                        {"leaf_index": index, "tree_size": size, "proof": [p.hex() for p in proof]}
                    )
                )
                events_n += 1
            timeline.append((invoice.invoice_key, views))
            attachments |= attachments_of.get(str(invoice_id), set())
            if progress:
                progress(n, len(invoice_ids))
        if attachments:
            (root / "attachments").mkdir()
            for sha in sorted(attachments):
                if services.attachments.exists(sha):
                    (root / "attachments" / sha).write_bytes(services.attachments.read(sha))
        (root / "report.html").write_text(_report(timeline, checkpoint), encoding="utf-8")
        bagit.make_bag(
            str(root),
            {
                "Source-Organization": tenant_id,
                "External-Identifier": out.stem,
                "Bag-Software-Agent": "fapiao-ledger",
                "Fapiao-Log-Origin": services.settings.origin,
                "Fapiao-Checkpoint-Size": str(size),
                "Fapiao-Subject": " ".join(str(i) for i in invoice_ids),
            },
            checksums=["sha256"],
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(root.parent))
    return BundleReport(len(invoice_ids), events_n, len(attachments), size, out)


def _case_attachments(services: Services, tenant_id: str) -> dict[str, set[str]]:
    """Invoice id -> hashes of the files attached to the cases naming it (one pass per bundle)."""
    with services.engine.connect() as conn:
        found = [
            (r.case_id, r.invoice_ids.split(","))
            for r in conn.execute(
                select(cases.c.case_id, cases.c.invoice_ids).where(cases.c.tenant_id == tenant_id)
            )
        ]
    by_invoice: dict[str, set[str]] = {}
    for case_id, invoice_ids in found:
        case = services.ledger.repository.get(case_id)
        hashes = {
            a["sha256"] for a in getattr(case, "attachments", []) + getattr(case, "evidence", [])
        }
        if hashes:
            for invoice_id in invoice_ids:
                by_invoice.setdefault(invoice_id, set()).update(hashes)
    return by_invoice


def _report(timeline: list[tuple[str, list[Any]]], checkpoint: dict[str, Any]) -> str:
    rows = []
    for key, views in timeline:
        rows.append(
            f"<h2>发票 Invoice {html.escape(key)}</h2><table border=1 cellpadding=4>"
            "<tr><th>位置 Position</th><th>事件 Event</th><th>业务时间 Business time</th>"
            "<th>记录时间 Recorded (UTC)</th><th>操作人 Actor</th><th>来源 Source</th></tr>"
        )
        for v in views:
            rows.append(
                f"<tr><td>{v.position}</td><td>{html.escape(v.type)}</td>"
                f"<td>{html.escape(v.occurred_at)}</td><td>{html.escape(v.recorded_at)}"
                f"</td><td>{html.escape(v.actor)}</td><td>{html.escape(v.source)}</td>"
                "</tr>"
            )
        rows.append("</table>")
    return (
        "<!doctype html><html lang=zh><meta charset=utf-8><title>证据包 Evidence bundle"
        "</title><h1>发票证据包 Invoice evidence bundle</h1>"
        f"<p>签名检查点 Signed checkpoint: tree size {checkpoint['tree_size']}, root "
        f"<code>{checkpoint['root_hash']}</code>, key {html.escape(checkpoint['key_name'])}"
        "</p><p>验证方法见 README.txt。How to verify: see README.txt. The proofs show these "
        "events are in the log the checkpoint signs; they do not show what the log's "
        "operator did not record.</p>" + "".join(rows) + "</html>"
    )


@dataclass
class BundleVerifyReport:
    invoices: int = 0
    events: int = 0
    failures: list[str] = field(default_factory=list)
    key_source: str = ""


def verify_bundle(bundle: Path, vkey: str | None = None) -> BundleVerifyReport:
    """Check a bundle offline: BagIt checksums, leaves, proofs, the signature, the replay."""
    result = BundleVerifyReport()
    with tempfile.TemporaryDirectory(prefix="fapiao-verify-") as tmp:
        try:
            with zipfile.ZipFile(bundle) as z:
                z.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            result.failures.append(f"{bundle.name}: not a readable zip ({e})")
            return result
        roots = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(roots) != 1:
            result.failures.append("the zip should hold exactly one bag folder")
            return result
        root = roots[0]
        try:
            bagit.Bag(str(root)).validate()
        except bagit.BagValidationError as e:
            for d in getattr(e, "details", []) or [e]:
                result.failures.append(f"BagIt: {d}")
        except bagit.BagError as e:
            result.failures.append(f"BagIt: {e}")
        data = root / "data"
        _verify_payload(data, vkey, result)
    return result


def _verify_payload(data: Path, vkey: str | None, result: BundleVerifyReport) -> None:
    try:
        checkpoint, sigs = parse_note((data / "checkpoint.txt").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        result.failures.append(f"data/checkpoint.txt: {e}")
        return
    if vkey is None:
        vkey = (data / "keys" / "log.vkey").read_text(encoding="utf-8").strip()
        result.key_source = "the key inside the bundle (check it against one you trust)"
    else:
        result.key_source = "the key you supplied"
    name, key_hex, key_b64 = vkey.split("+", 2)
    public = base64.b64decode(key_b64)[1:]
    if not any(
        s.key_name == name
        and s.key_id.hex() == key_hex
        and verify_note_signature(checkpoint, s, public)
        for s in sigs
    ):
        result.failures.append("data/checkpoint.txt: no valid signature by the log key")
    mapper = InvoiceLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, SystemClock()).mapper
    for folder in sorted((data / "invoices").iterdir()) if (data / "invoices").exists() else []:
        result.invoices += 1
        invoice: Any = None
        for path in sorted((folder / "events").glob("*.json"), key=lambda p: int(p.stem)):
            where = path.relative_to(data.parent)
            try:
                entry = json.loads(path.read_bytes())
                proof = json.loads((folder / "proofs" / path.name).read_bytes())
                state = base64.b64decode(entry["state_base64"])
                leaf = entry["leaf"]
            except (OSError, ValueError, KeyError) as e:
                result.failures.append(f"{where}: unreadable ({e})")
                continue
            result.events += 1
            if hashlib.sha256(state).hexdigest() != leaf.get("state_sha256"):
                result.failures.append(f"{where}: the state bytes do not match the leaf")
            leaf_hash = merkle.leaf_hash(rfc8785.dumps(leaf))
            if proof.get("tree_size") != checkpoint.size or not merkle.verify_inclusion(
                proof["leaf_index"],
                checkpoint.size,
                leaf_hash,
                [bytes.fromhex(p) for p in proof["proof"]],
                checkpoint.root,
            ):
                result.failures.append(f"{where}: not in the tree the checkpoint signs")
            try:
                event = mapper.to_domain_event(
                    StoredEvent(
                        UUID(leaf["stream_id"]), leaf["stream_version"], leaf["topic"], state
                    )
                )
                invoice = event.mutate(invoice)
            except Exception as e:  # noqa: BLE001 - reported, not raised
                result.failures.append(f"{where}: does not replay ({type(e).__name__}: {e})")
        stated = json.loads((folder / "state.json").read_bytes())
        if invoice is not None and rfc8785.dumps(
            {"derived": True, **_state(invoice)}
        ) != rfc8785.dumps(stated):
            result.failures.append(
                f"{folder.relative_to(data.parent)}/state.json: replaying "
                "the events gives a different state"
            )


def bundle_name(tenant_id: str, subject: str) -> str:
    return f"fapiao-evidence-{tenant_id}-{subject}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
