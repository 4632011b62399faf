"""Evidence bundles: a BagIt 1.0 zip per selection of invoices that a third party can verify
offline (infrastructure/evidence/bundle_verifier.py is ours; the README teaches anyone to
write theirs).

Layout (all JSON is RFC 8785 canonical; hashes in JSON are hex, roots in notes base64):

    bagit.txt, bag-info.txt, manifest-sha256.txt, tagmanifest-sha256.txt
    data/README.txt                   how to verify, step by step
    data/checkpoint.txt               the signed checkpoint (C2SP note; stream-heads line)
    data/manifest.txt                 signed note: who exported what, when, against which
                                      checkpoint, every invoice, case and file in the bundle
    data/keys/log.vkey, log.pem       the log's public key (verify against one you trust)
    data/report.html                  what an inspector reads (rebuilt by the verifier)
    data/invoices/<id>/               one folder per invoice stream, and data/cases/<id>/ per
      events/<position>.json          case naming one of them: {"leaf", "state_base64",
      proofs/<position>.json          "decoded"}; {"leaf_index", "tree_size", "proof"};
      head.json                       the stream's head and its proof in the heads tree;
      state.json                      the aggregate replayed from its events (derived)
    data/attachments/<sha256>         files the cases cite
    data/checkpoints/<m>.txt          with --since-checkpoint: the checkpoint the inspector
    data/consistency/<m>-<n>.json     held, and the proof that this log extends it

    data/timestamps/<i>.tsr           RFC 3161 TimeStampResp (DER, as the TSA sent it) over
                                      SHA-256 of checkpoint.txt's body, one per TSA (i = 1..)

Witness cosignatures (c2sp.org/tlog-cosignature) are further signature lines of
checkpoint.txt: a verifier that does not know the witnesses' keys ignores them.

An export is reproducible: what it recorded (the access record's details) is enough to write
the same bytes again, which is how a repeated Idempotency-Key is answered.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from application.access import Principal
from application.dto import Idempotency
from application.evidence.bundle_contents import (
    BUNDLE_FORMAT,
    REPORT_TAIL,
    StreamView,
    attachment_refs,
    canonical,
    case_numbers,
    case_section,
    checkpoint_summary,
    decoded_event_bytes,
    derived_state,
    derived_state_bytes,
    event_file,
    invoice_section,
    manifest_text,
    report_head,
)
from application.evidence.leaf_encoding import head_document, leaf_document
from application.evidence.seal_guard import SealBrokenError
from application.ports import StoredEventRow
from application.service_errors import (
    ApplicationError,
    IdempotencyKeyReusedError,
    InvoiceNotFoundError,
)
from domain.base import LedgerEvent, Provenance, Source
from domain.calendar import SHANGHAI
from domain.errors import InvalidFieldError
from domain.evidence import merkle
from domain.evidence.checkpoint import Checkpoint, NoteFormatError, parse_note
from domain.idempotency import CommandReceipt, receipt_id
from domain.invoices.invoice import Invoice
from infrastructure.bootstrap import Services
from infrastructure.evidence.bag_zip import BagZipWriter
from infrastructure.evidence.checkpoint_signer import verify_note_signature
from infrastructure.evidence.merkle_log import SealedProofs
from infrastructure.store.tables import cases

README = """fapiao-ledger evidence bundle / 发票台账证据包

How to verify (no fapiao-ledger needed; any BagIt, RFC 8785, RFC 9162 and Ed25519 tools do;
the project README, section "The Merkle log and evidence bundles", gives every format):
1. BagIt: every file's SHA-256 matches manifest-sha256.txt (e.g. `bagit.py --validate`).
2. checkpoint.txt and manifest.txt are C2SP signed notes. Verify their Ed25519 signatures with
   a log key you obtained independently (keys/log.vkey is the key the bundle names).
3. For each events/<position>.json: SHA-256 of base64-decoded "state_base64" equals
   leaf.state_sha256; the leaf hash is SHA-256(0x00 || JCS(leaf)); its proofs/<position>.json
   is an RFC 9162 inclusion proof against the checkpoint's root.
4. For each stream: head.json's head hashes the same way and its proof gives the checkpoint's
   stream-heads root (the "fapiao-stream-heads/v1 <count> <root>" line); the events hold
   versions 1..last_version, the last at last_position. Nothing later existed up to the
   checkpoint.
5. The manifest (line 2 of manifest.txt, JCS) lists every invoice, case and attachment: the
   bundle holds exactly those; its "log" names this checkpoint.
6. "decoded", state.json and report.html are derived from the state bytes; fapiao-ledger's
   verifier rebuilds them and compares byte for byte.
7. consistency/<m>-<n>.json (if present) proves this log extends checkpoints/<m>.txt.
"""


ISSUED = Invoice.Issued.TOPIC


class EmptyLedgerError(ApplicationError):
    """Nothing is sealed yet, so there is nothing to prove."""

    def __init__(self) -> None:
        super().__init__("the ledger is empty: nothing to prove")


@dataclass
class BundleReport:
    invoices: int
    cases: int
    events: int
    attachments: int
    tree_size: int
    path: Path
    bundle_id: str
    replayed: bool = False


@dataclass
class ExportRequest:
    """What to export and for whom. `principal` is the API key; without one (the command
    line) `by` names the operator."""

    tenant_id: str
    invoice_ids: Sequence[UUID]
    refs: Sequence[str] = ()
    status: str | None = None
    principal: Principal | None = None
    by: Provenance | None = None
    since_checkpoint: str | None = None
    idempotency: Idempotency | None = None


@dataclass
class ExportPlan:
    """Everything that decides a bundle's bytes (kept in the access record's details)."""

    bundle_id: str
    tenant: str
    tenant_name: str
    exported_at: str
    exported_by: dict[str, Any]
    selection: dict[str, Any]
    invoice_ids: list[str]
    case_ids: list[str]
    tree_size: int
    key_name: str
    known_checkpoint: str | None = None

    def details(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> ExportPlan:
        return cls(**details)

    @property
    def name(self) -> str:
        stamp = datetime.fromisoformat(self.exported_at).strftime("%Y%m%dT%H%M%SZ")
        subject = self.invoice_ids[0] if len(self.invoice_ids) == 1 else f"{len(self.invoice_ids)}"
        return f"fapiao-evidence-{self.tenant}-{subject}-{stamp}"


def unique(ids: Sequence[UUID]) -> list[UUID]:
    """The same invoice named twice (by id and by key, say) is one invoice."""
    return list(dict.fromkeys(ids))


def export_bundle(
    services: Services,
    request: ExportRequest,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    """Write the bundle to `out` (.zip) and record the export (sealed, in the access log).

    Refused (SealBrokenError) while the ledger does not match its seal; a repeated
    Idempotency-Key writes the first bundle's bytes again and records nothing."""
    if request.idempotency is not None:
        replay = _replay(services, request, out)
        if replay is not None:
            return replay
    services.bring_up_to_date("cases")  # which cases name each invoice
    services.bring_up_to_date("seal")
    ids = unique(request.invoice_ids)
    known = _known_checkpoint(services, request.since_checkpoint)
    candidates = _cases_naming(services, request.tenant_id, ids)
    streams = [str(i) for i in ids] + candidates
    sealed = _prove(services, streams, None, known)
    proofs, row, first_topics = sealed
    for invoice_id in ids:  # this tenant's invoices only (else 404), without replaying them
        head = proofs.stream_heads.get(str(invoice_id))
        if (
            head is None
            or head[0].tenant != request.tenant_id
            or first_topics[str(invoice_id)] != ISSUED
        ):
            raise InvoiceNotFoundError(invoice_id)
    names = dict(services.keys.list_tenants())
    by = request.by
    if by is None:
        if request.principal is None:
            raise ValueError("an export names who made it")
        by = Provenance(request.principal.actor, Source.API, services.ledger.clock.now())
    plan = ExportPlan(
        bundle_id=str(uuid4()),
        tenant=request.tenant_id,
        tenant_name=names.get(request.tenant_id, ""),
        exported_at=services.ledger.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        exported_by=_exported_by(request),
        selection={"invoices": list(request.refs), "status": request.status},
        invoice_ids=[str(i) for i in ids],
        case_ids=[c for c in candidates if c in proofs.stream_heads],
        tree_size=proofs.size,
        key_name=str(row["key_name"]),
        known_checkpoint=request.since_checkpoint,
    )
    report = write_bundle(services, plan, sealed, out, progress)
    record = services.access_log.entry(
        request.principal,
        "evidence-export",
        ",".join(plan.invoice_ids[:20]) + ("..." if len(ids) > 20 else ""),
        plan.details(),
        by.occurred_at,
        by,
    )
    aggregates: list[Any] = [record]
    if request.idempotency is not None:
        body = {"access_id": str(record.id), "bundle_id": plan.bundle_id}
        aggregates.append(
            CommandReceipt.record(
                request.tenant_id,
                request.idempotency.key,
                request.idempotency.fingerprint,
                body,
                by,
            )
        )
    try:
        services.ledger.save(*aggregates)
    except IntegrityError:  # the same Idempotency-Key won a race: answer as it did
        replay = _replay(services, request, out)
        if replay is None:
            raise
        return replay
    return report


# The proofs at one signed size, the checkpoint's row, and each stream's first topic.
Sealed = tuple[SealedProofs, dict[str, Any], dict[str, str | None]]
STREAMS_PER_BATCH = 500  # streams read (and held) at once: what bounds an export's memory


def _read_streams(
    services: Services, streams: Sequence[str]
) -> Iterator[tuple[str, list[StoredEventRow]]]:
    """Each stream's stored events, in the order given, read a batch of streams at a time."""
    for start in range(0, len(streams), STREAMS_PER_BATCH):
        chunk = streams[start : start + STREAMS_PER_BATCH]
        found = services.ledger.event_log.select_streams([UUID(sid) for sid in chunk])
        for sid in chunk:
            yield sid, found[UUID(sid)]
        del found


def _prove(
    services: Services, streams: list[str], size: int | None, known: Checkpoint | None
) -> Sealed:
    """The streams' proofs at one signed size (the events are read a batch at a time, keeping
    only their positions; `write_bundle` reads them again as it writes). Events sealed while
    the rows were being read are picked up by reading again."""
    for _ in range(5):
        positions: list[int] = []
        last: dict[str, int] = {}
        first_topics: dict[str, str | None] = {}
        for sid, stream in _read_streams(services, streams):
            positions += [r.position for r in stream]
            first_topics[sid] = stream[0].topic if stream else None
            if stream:
                last[sid] = stream[-1].position
        try:
            proofs, row = services.merkle.prove(
                positions, streams, size, known.size if known else None
            )
        except SealBrokenError as e:
            if e.reason == "nothing is sealed":
                raise EmptyLedgerError() from None
            raise
        del positions
        if known is not None:
            if proofs.known is None:
                raise InvalidFieldError(
                    "since_checkpoint",
                    f"its size {known.size} is not within this log's {proofs.size} leaves",
                    "range",
                )
            if proofs.known[0] != known.root:
                raise SealBrokenError(f"the checkpoint of size {known.size} you hold is a fork")
        behind = [
            sid
            for sid, (head, _) in proofs.stream_heads.items()
            if last.get(sid, -1) < head.position
        ]
        if not behind:
            return proofs, row, first_topics
    raise SealBrokenError("the streams kept changing while they were read; try again")


def _exported_by(request: ExportRequest) -> dict[str, Any]:
    if request.principal is not None:
        p = request.principal
        return {"actor": p.actor, "key_id": p.key_id, "roles": sorted(p.roles), "source": "api"}
    if request.by is None:
        raise ValueError("an export names who made it")
    return {"actor": request.by.actor, "key_id": None, "roles": [], "source": request.by.source}


def _replay(services: Services, request: ExportRequest, out: Path) -> BundleReport | None:
    idempotency = request.idempotency
    if idempotency is None:
        return None
    try:
        receipt = services.ledger.repository.get(receipt_id(request.tenant_id, idempotency.key))
    except AggregateNotFoundError:
        return None
    if not isinstance(receipt, CommandReceipt) or "bundle_id" not in receipt.response:
        raise IdempotencyKeyReusedError(idempotency.key)
    if receipt.fingerprint != idempotency.fingerprint:
        raise IdempotencyKeyReusedError(idempotency.key)
    record = services.access_log.get(UUID(receipt.response["access_id"]))
    plan = ExportPlan.from_details(record.details)
    known = _known_checkpoint(services, plan.known_checkpoint)
    sealed = _prove(services, plan.invoice_ids + plan.case_ids, plan.tree_size, known)
    report = write_bundle(services, plan, sealed, out)
    report.replayed = True
    return report


def _known_checkpoint(services: Services, text: str | None) -> Checkpoint | None:
    """The inspector's earlier checkpoint, checked to be one this log signed."""
    if text is None:
        return None
    try:
        checkpoint, sigs = parse_note(text)
    except NoteFormatError as e:
        raise InvalidFieldError("since_checkpoint", f"not a checkpoint note: {e}", "format") from e
    keys = {k.key_id: k.public_key for k in services.merkle.signer.public_keys()}
    if checkpoint.origin != services.merkle.signer.origin or not any(
        s.key_id.hex() in keys and verify_note_signature(checkpoint.body(), s, keys[s.key_id.hex()])
        for s in sigs
    ):
        raise InvalidFieldError(
            "since_checkpoint", "this log did not sign that checkpoint", "unknown_checkpoint"
        )
    if checkpoint.size == 0:
        raise InvalidFieldError("since_checkpoint", "an empty tree proves nothing", "range")
    return checkpoint


def _cases_naming(services: Services, tenant_id: str, ids: Sequence[UUID]) -> list[str]:
    """Cases (supplementary entry, complaints) naming any of these invoices."""
    wanted = {str(i) for i in ids}
    with services.engine.connect() as conn:
        return [
            str(r.case_id)
            for r in conn.execute(
                select(cases.c.case_id, cases.c.invoice_ids)
                .where(cases.c.tenant_id == tenant_id)
                .order_by(cases.c.number)
            )
            if wanted & set(r.invoice_ids.split(","))
        ]


def write_bundle(
    services: Services,
    plan: ExportPlan,
    sealed: Sealed,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    """The bundle's bytes, from the plan and the sealed log at `plan.tree_size` only."""
    proofs, row, _ = sealed
    note = str(row["note"])
    checkpoint, _ = parse_note(note)
    if checkpoint.stream_heads() != proofs.heads or checkpoint.size != proofs.size:
        raise SealBrokenError(f"checkpoint {checkpoint.size}: its stream heads differ")
    writer = BagZipWriter(out, plan.name, datetime.fromisoformat(plan.exported_at))
    report = writer.spool()
    try:
        writer_ = _Writer(services, proofs, writer)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "bundle_id": plan.bundle_id,
            "tenant": {"taxpayer_code": plan.tenant, "name": plan.tenant_name},
            "exported_at": plan.exported_at,
            "exported_by": plan.exported_by,
            "selection": plan.selection,
            "log": checkpoint_summary(checkpoint),
            "known_checkpoint": None,
            "invoices": [],
            "cases": [],
        }
        known: Checkpoint | None = None
        if plan.known_checkpoint is not None and proofs.known is not None:
            known, _ = parse_note(plan.known_checkpoint)
            manifest["known_checkpoint"] = {"tree_size": known.size, "root": known.root_b64}
        # The report is written as the streams go by; an invoice's part names the cases naming
        # it, so the cases are replayed first (their files still come after the invoices').
        numbers = case_numbers(writer_.replayed(plan.case_ids))
        report.write(report_head(manifest, checkpoint).encode())
        total = len(plan.invoice_ids) + len(plan.case_ids)
        n = 0
        for kind, ids in (("invoice", plan.invoice_ids), ("case", plan.case_ids)):
            label = "invoice_key" if kind == "invoice" else "number"
            for sid, stored in _read_streams(services, ids):
                view, head = writer_.stream(kind, sid, stored)
                section = (
                    invoice_section(view, numbers.get(sid, ()))
                    if kind == "invoice"
                    else case_section(view)
                )
                report.write(section.encode())
                manifest[f"{kind}s"].append(
                    {
                        "stream_id": sid,
                        label: view.state.get(label),
                        "last_version": head["last_version"],
                        "last_position": head["last_position"],
                    }
                )
                n += 1
                if progress:
                    progress(n, total)
        report.write(REPORT_TAIL.encode())
        kept, missing = writer_.attachments()
        manifest["attachments"] = kept
        manifest["attachments_not_kept"] = missing
        if known is not None and proofs.known is not None and plan.known_checkpoint is not None:
            writer.add(f"checkpoints/{known.size}.txt", plan.known_checkpoint.encode())
            writer.add(
                f"consistency/{known.size}-{proofs.size}.json",
                canonical(
                    {
                        "first": known.size,
                        "second": proofs.size,
                        "proof": [p.hex() for p in proofs.known[1]],
                    }
                ),
            )
        signer = services.merkle.signer
        key = next(k for k in signer.public_keys() if k.name == plan.key_name)
        writer.add("README.txt", README.encode())
        anchors = services.anchors.anchors(checkpoint.size)
        writer.add("checkpoint.txt", services.anchors.anchored_note(note, checkpoint.size).encode())
        for i, token in enumerate(anchors["timestamps"], start=1):
            writer.add(f"timestamps/{i}.tsr", base64.b64decode(token["token"]))
        writer.add(
            "manifest.txt", signer.sign_text(manifest_text(manifest), plan.key_name).encode()
        )
        writer.add("keys/log.vkey", f"{key.vkey}\n".encode())
        writer.add("keys/log.pem", key.pem().encode())
        writer.add_spooled("report.html", report)
        writer.close(_bag_info(plan, checkpoint))
    except BaseException:
        report.close()
        writer.abort()
        out.unlink(missing_ok=True)
        raise
    return BundleReport(
        len(plan.invoice_ids),
        len(plan.case_ids),
        writer_.events,
        len(kept),
        proofs.size,
        out,
        plan.bundle_id,
    )


def _bag_info(plan: ExportPlan, checkpoint: Checkpoint) -> list[tuple[str, str]]:
    day = datetime.fromisoformat(plan.exported_at).astimezone(SHANGHAI).date().isoformat()
    return [
        ("Source-Organization", plan.tenant_name or plan.tenant),
        ("Organization-Identifier", plan.tenant),
        ("Bagging-Date", day),
        ("External-Identifier", plan.bundle_id),
        ("Bag-Software-Agent", "fapiao-ledger"),
        ("Fapiao-Log-Origin", checkpoint.origin),
        ("Fapiao-Checkpoint-Size", str(checkpoint.size)),
        ("Fapiao-Invoices", str(len(plan.invoice_ids))),
        ("Fapiao-Cases", str(len(plan.case_ids))),
    ]


@dataclass
class _Writer:
    services: Services
    proofs: SealedProofs
    zip: BagZipWriter
    events: int = 0
    refs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stream(
        self, kind: str, sid: str, stored: list[StoredEventRow]
    ) -> tuple[StreamView, dict[str, Any]]:
        """Write one stream's files; (what the report shows of it, its head document)."""
        folder = f"{kind}s/{sid}"
        proofs = self.proofs
        rows = [r for r in stored if r.position in proofs.leaves]  # what the checkpoint covers
        aggregate: Any = None
        decoded = []
        tree_size = proofs.size
        for row in rows:
            i, sealed_hash, tenant = proofs.leaves[row.position]
            leaf = leaf_document(row, tenant)
            leaf_bytes = canonical(leaf)
            if merkle.leaf_hash(leaf_bytes) != sealed_hash:
                raise SealBrokenError(
                    f"position {row.position}: the stored event differs from its sealed leaf"
                )
            event = self._event(row)
            aggregate = event.mutate(aggregate)
            view, view_bytes = decoded_event_bytes(event, leaf)
            if view_bytes is None:
                view_bytes = canonical(view)  # raises what RFC 8785 says of it
            decoded.append(view)
            state = base64.b64encode(row.state).decode()
            self.zip.add(
                f"{folder}/events/{row.position}.json", event_file(view_bytes, leaf_bytes, state)
            )
            self.zip.add(
                f"{folder}/proofs/{row.position}.json",
                _proof_file(i, tree_size, proofs.inclusion[row.position]),
            )
            self.events += 1
        found = proofs.stream_heads.get(sid)
        if found is None or not rows:
            raise SealBrokenError(f"stream {sid} has no sealed events")
        head, path = found
        if (head.version, head.position) != (rows[-1].originator_version, rows[-1].position):
            raise SealBrokenError(f"stream {sid}: its sealed head differs from its events")
        head_doc = head_document(sid, head.version, head.position)
        self.zip.add(
            f"{folder}/head.json",
            canonical(
                {
                    "head": head_doc,
                    "leaf_index": head.slot,
                    "tree_size": proofs.heads.count,
                    "proof": [p.hex() for p in path],
                }
            ),
        )
        derived, derived_bytes = derived_state_bytes(aggregate)
        self.zip.add(f"{folder}/state.json", derived_bytes or canonical(derived))
        for ref in attachment_refs(decoded):
            self.refs.setdefault(ref["sha256"], ref)
        return StreamView(kind, sid, derived, decoded), head_doc

    def replayed(self, streams: Sequence[str]) -> Iterator[StreamView]:
        """The streams' states, replayed from their sealed events (nothing written)."""
        for sid, stored in _read_streams(self.services, streams):
            aggregate: Any = None
            for row in stored:
                if row.position in self.proofs.leaves:
                    aggregate = self._event(row).mutate(aggregate)
            if aggregate is not None:
                yield StreamView("case", sid, derived_state(aggregate), [])

    def _event(self, row: StoredEventRow) -> LedgerEvent:
        event: LedgerEvent = self.services.ledger.mapper.to_domain_event(row)  # type: ignore[arg-type]
        return event

    def attachments(self) -> tuple[list[str], list[str]]:
        """Write every file the streams written cite that the store holds; (kept, not kept)."""
        kept, missing = [], []
        store = self.services.attachments
        for sha in sorted(self.refs):
            if store.exists(sha):
                self.zip.add(f"attachments/{sha}", store.read(sha))
                kept.append(sha)
            else:
                missing.append(sha)
        return kept, missing


def _proof_file(index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """proofs/<position>.json: `canonical({"leaf_index", "tree_size", "proof"})`, written
    directly (integers and hex strings only: keys sorted, no spaces, nothing to escape)."""
    hashes = '","'.join(p.hex() for p in path)
    proof = f'["{hashes}"]' if path else "[]"
    return f'{{"leaf_index":{index},"proof":{proof},"tree_size":{tree_size}}}'.encode()
