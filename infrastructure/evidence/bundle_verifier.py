"""The offline bundle verifier (`fapiao evidence verify`): no database, no network.

It checks what a third party could check with the README alone (BagIt, signatures, inclusion
proofs, stream heads, the signed manifest, consistency with a checkpoint the inspector holds)
and then what only the product can: it decodes every event from its sealed state bytes (only
the project's own topics, never importing a module a bundle names) and rebuilds `decoded`,
`state.json` and `report.html`, naming the file and the field wherever they differ.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import json
import multiprocessing
import os
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.domain import AggregateCreated

from application.evidence import canonical_json
from application.evidence.bundle_contents import (
    REPORT_TAIL,
    StreamView,
    attachment_refs,
    canonical,
    case_numbers,
    case_section,
    checkpoint_summary,
    decoded_event_bytes,
    derived_state_bytes,
    event_file,
    invoice_section,
    read_manifest_text,
    report_head,
)
from application.evidence.event_catalog import EventCatalog, UnknownTopicError
from application.invoices.ledger import InvoiceLedger
from domain.evidence import merkle
from domain.evidence.checkpoint import (
    Checkpoint,
    NoteFormatError,
    NoteSignature,
    StreamHeads,
    VerifierKey,
    parse_checkpoint,
    parse_signed_note,
    parse_verifier_key,
)
from domain.evidence.cosignature import CosignerKey
from infrastructure.clock import SystemClock
from infrastructure.evidence import fast_json
from infrastructure.evidence.bag_zip import UnsafeBundleError, ZipBag, open_bag, read_tags
from infrastructure.evidence.bundle import README
from infrastructure.evidence.checkpoint_signer import verify_note_signature
from infrastructure.evidence.cosigning import verify_cosignature
from infrastructure.evidence.timestamping import TimestampError, verify_token
from infrastructure.projections.decoding import EventDecoder

UNTRUSTED = "UNTRUSTED: signature checked only against the bundle's own key"
LEAF_FIELDS = {
    "position",
    "recorded_at",
    "state_sha256",
    "stream_id",
    "stream_version",
    "tenant",
    "topic",
}


@dataclass
class BundleVerifyReport:
    invoices: int = 0
    cases: int = 0
    events: int = 0
    attachments: int = 0
    tree_size: int | None = None
    known_size: int | None = None
    trusted: bool = False
    failures: list[str] = field(default_factory=list)
    # Each check the verifier ran, in order, with the failures it found (a failure sits under
    # the check that found it); a check missing here did not run (an earlier one stopped it).
    checks: dict[str, list[str]] = field(default_factory=dict)
    # The anchors checked: each timestamp token (file, TSA genTime) and witness cosignature
    # (witness, its time), and the earliest trusted time the checkpoint provably existed.
    timestamps: list[tuple[str, datetime]] = field(default_factory=list)
    witnesses: list[tuple[str, datetime]] = field(default_factory=list)
    earliest: tuple[datetime, str] | None = None
    workers: int = 1  # the processes that checked the invoice streams

    @property
    def key_source(self) -> str:
        return "a key you supplied" if self.trusted else UNTRUSTED


def read_key_file(text: str) -> list[VerifierKey]:
    """Verifier keys, one per line (`fapiao ledger keys` output); blank and # lines skipped."""
    keys = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                keys.append(parse_verifier_key(line))
            except NoteFormatError as e:
                raise ValueError(f"line {n}: {e}") from None
    if not keys:
        raise ValueError("no verifier key in the file")
    return keys


def verify_bundle(
    bundle: Path,
    catalog: EventCatalog,
    trusted_keys: Sequence[VerifierKey] | None = None,
    known_checkpoint: str | None = None,
    anchors: AnchorPolicy | None = None,
    workers: int = 1,
) -> BundleVerifyReport:
    """Check a bundle offline; every failure is named (file, and field where there is one).
    With `anchors`, the checkpoint's timestamp tokens and witness cosignatures are checked
    too (tokens against the TSA CAs given, cosignatures against the witness keys given).

    With `workers` > 1, a bundle of PARALLEL_FROM invoices or more has its invoice streams
    checked by that many processes (this one and forked ones, where the platform forks), a
    slice at a time, the report the same as one process gives. Fork only from a process
    with no other threads (the CLI): a server keeps the default, 1."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers: {workers}, expected 1 to {MAX_WORKERS}")
    fast_json.install()
    result = BundleVerifyReport()
    result.checks["readable"] = []
    try:
        bag = open_bag(bundle)
    except (zipfile.BadZipFile, OSError) as e:
        result.failures.append(f"{bundle.name}: not a readable zip ({e})")
        result.checks["readable"].append(result.failures[-1])
        return result
    except UnsafeBundleError as e:
        result.failures.append(str(e))
        result.checks["readable"].append(str(e))
        return result
    try:
        verifier = _Verifier(bag, catalog, trusted_keys, known_checkpoint, result, anchors)
        verifier.workers = workers
        verifier.run()
    finally:
        bag.close()
    return result


MAX_WORKERS = 64
PARALLEL_FROM = 1000  # invoices: below, forking costs more than it saves
SLICE = 250  # invoice streams a worker checks at a time (and sends back at once)


def default_workers() -> int:
    """The CPUs this process may run on (at most 8): the CLI's --workers."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


# The checks in the order `verify_bundle` runs them (the console shows them one by one).
CHECKS = (
    "readable",
    "bagit",
    "keys",
    "checkpoint",
    "manifest",
    "streams",
    "attachments",
    "consistency",
    "timestamps",
    "witnesses",
    "report",
    "files",
)


@dataclass(frozen=True)
class AnchorPolicy:
    """What the inspector trusts and asks of a checkpoint's anchors."""

    tsa_cas: Sequence[x509.Certificate] = ()
    witness_keys: Sequence[CosignerKey] = ()
    min_witnesses: int = 0


# Checks that run only when the inspector gives what they need (TSA CAs, witness keys): a
# report without them did not ask, which is not "stopped by an earlier failure".
ASKED_FOR = frozenset({"timestamps", "witnesses"})


class _Verifier:
    def __init__(
        self,
        bag: ZipBag,
        catalog: EventCatalog,
        trusted: Sequence[VerifierKey] | None,
        known: str | None,
        result: BundleVerifyReport,
        anchors: AnchorPolicy | None = None,
    ) -> None:
        self.anchors = anchors or AnchorPolicy()
        self.checkpoint_text: tuple[str, list[NoteSignature]] | None = None
        self.bag, self.catalog = bag, catalog
        self.trusted, self.known, self.result = trusted, known, result
        self.keys: list[VerifierKey] = []
        self.mapper = InvoiceLedger(
            {"PERSISTENCE_MODULE": "eventsourcing.popo"}, SystemClock()
        ).mapper
        self.decoder = EventDecoder(self.mapper)  # the mapper's events (and its errors), faster
        self.expected = bytearray(len(bag))  # by place in the bag: files a bundle holds
        self.check = "bagit"
        self.workers = 1
        self.report_line: int | None = None  # where report.html first differs, if it does

    def fail(self, text: str) -> None:
        self.result.failures.append(text)
        self.result.checks.setdefault(self.check, []).append(text)

    def checking(self, name: str) -> None:
        """From here on, failures belong to check `name` (one of CHECKS)."""
        self.check = name
        self.result.checks.setdefault(name, [])

    def read(self, name: str) -> bytes | None:
        """data/<name>, or None (and a failure) if the bag lacks it."""
        data = self.bag.read(f"data/{name}", self._expect(name))
        if data is None:
            self.fail(f"data/{name}: missing")
        return data

    def _expect(self, name: str) -> int | None:
        """data/<name> is a file a bundle holds (the files check names any other); its place
        in the bag, if it is there."""
        at = self.bag.position(f"data/{name}")
        if at is not None:
            self.expected[at] = 1
        return at

    # ---- the whole bag ----

    def run(self) -> None:
        # BagIt is checked first (its failures come first), but computed last: the other checks
        # read the files, each read hashes its bytes, and BagIt then reads only what they did
        # not (one pass over the zip). Nothing fails before it: it starts the list.
        self.checking("bagit")
        self._checks()
        failures, checks = self.result.failures, self.result.checks
        before, checks["bagit"] = list(failures), []
        self.check = "bagit"
        self._bagit()
        failures[:] = checks["bagit"] + before

    def _checks(self) -> None:
        self.checking("keys")
        self._keys()
        self.checking("checkpoint")
        checkpoint = self._checkpoint()
        self.checking("manifest")
        manifest = self._manifest(checkpoint)
        if checkpoint is None:
            return
        self.checking("streams")
        heads = checkpoint.stream_heads()
        if heads is None:
            self.fail("data/checkpoint.txt: no fapiao-stream-heads/v1 line")
            heads = StreamHeads(0, b"")
        streams = self._streams(checkpoint, heads, manifest)
        if manifest is None:
            return
        self.checking("manifest")
        self._against_manifest(manifest, streams)
        self.checking("attachments")
        self._attachments(manifest, streams)
        self.checking("consistency")
        self._consistency(manifest, checkpoint)
        # The anchor checks run (and are listed) only when the inspector gave what they need.
        if self.anchors.tsa_cas:
            self.checking("timestamps")
        self._timestamps()
        if self.anchors.witness_keys or self.anchors.min_witnesses:
            self.checking("witnesses")
            self._witnesses()
        self._earliest()
        self.checking("report")
        self._report()
        self.checking("files")
        readme = self.read("README.txt")
        if readme is not None and readme != README.encode():
            self.fail("data/README.txt: differs from the instructions this verifier knows")
        self._bag_info(manifest)
        self._unexpected_files()

    def _bagit(self) -> None:
        version, failures = self.bag.validate()
        for failure in failures:
            self.fail(failure)
        if version is not None and version != "1.0":
            self.fail(f"bagit.txt: BagIt-Version {version}, expected 1.0")

    def _keys(self) -> None:
        bundled: VerifierKey | None = None
        raw = self.read("keys/log.vkey")
        if raw is not None:
            try:
                bundled = parse_verifier_key(raw.decode("utf-8"))
            except (UnicodeDecodeError, NoteFormatError) as e:
                self.fail(f"data/keys/log.vkey: {e}")
        pem = self.read("keys/log.pem")
        if pem is not None and bundled is not None:
            try:
                key = serialization.load_pem_public_key(pem)
                ok = isinstance(key, Ed25519PublicKey) and (
                    key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                    == bundled.public_key
                )
            except ValueError:
                ok = False
            if not ok:
                self.fail("data/keys/log.pem: not the key in data/keys/log.vkey")
        if self.trusted:
            self.keys, self.result.trusted = list(self.trusted), True
        elif bundled is not None:
            self.keys = [bundled]

    def _signed(self, name: str) -> tuple[str, list[NoteSignature]] | None:
        """data/<name> as a signed note: its text, once a key we trust signed it (else a
        failure, and the text is still returned so the rest can be checked)."""
        raw = self.read(name)
        if raw is None:
            return None
        text = raw.decode("utf-8", "replace")
        del raw  # one copy of the note at a time (a large bundle's manifest is MBs)
        try:
            body, sigs = parse_signed_note(text)
        except NoteFormatError as e:
            self.fail(f"data/{name}: {e}")
            return None
        del text
        if not any(
            s.key_name == k.name
            and s.key_id == k.key_id
            and verify_note_signature(body, s, k.public_key)
            for s in sigs
            for k in self.keys
        ):
            whose = "a key you trust" if self.result.trusted else "the bundle's key (keys/log.vkey)"
            self.fail(f"data/{name}: no valid signature by {whose}")
        return body, sigs

    def _checkpoint(self) -> Checkpoint | None:
        signed = self._signed("checkpoint.txt")
        if signed is None:
            return None
        self.checkpoint_text = signed
        try:
            checkpoint = parse_checkpoint(signed[0])
        except NoteFormatError as e:
            self.fail(f"data/checkpoint.txt: {e}")
            return None
        self.result.tree_size = checkpoint.size
        return checkpoint

    def _manifest(self, checkpoint: Checkpoint | None) -> dict[str, Any] | None:
        signed = self._signed("manifest.txt")
        if signed is None:
            return None
        try:
            manifest = read_manifest_text(signed[0])
            _check_shape(manifest)
        except ValueError as e:
            self.fail(f"data/manifest.txt: {e}")
            return None
        if checkpoint is not None and manifest.get("log") != checkpoint_summary(checkpoint):
            self.fail(
                "data/manifest.txt: log: the manifest was signed for another checkpoint than "
                "data/checkpoint.txt (rolled back or swapped?)"
            )
        return manifest

    # ---- streams ----

    def _streams(
        self, checkpoint: Checkpoint, heads: StreamHeads, manifest: dict[str, Any] | None
    ) -> _Tally:
        """Every stream checked once, in the report's order (the manifest's), its part of
        report.html rebuilt and compared as it goes, and its head with the manifest's entry:
        what is kept of each is a bit (and a line, if it differs).
        Cases come first (an invoice's part names the cases naming it); their failures are
        listed after the invoices', as the bundle orders them."""
        ranked = {}
        tally = _Tally(manifest)  # takes the manifest's lists (a 10,000-invoice one is MBs)
        for kind in ("invoice", "case"):
            # The folders present (a stray file is unexpected): those the manifest lists in
            # its order, then the others in theirs.
            order = tally.order[kind]
            folders, files = self.bag.entries(f"data/{kind}s")
            folders -= files  # a file of that name: unexpected, and not a stream
            ranked[kind] = sorted(folders.intersection(order), key=order.__getitem__)
            ranked[kind] += sorted(folders.difference(order))
        failures, found = self.result.failures, self.result.checks[self.check]
        marks = len(failures), len(found)
        cases: list[StreamView] = []
        for sid in ranked["case"]:
            view = self._stream("case", sid, checkpoint, heads)
            if view is not None:
                cases.append(view)
                tally.add(view, "number")
        case_failures = failures[marks[0] :], found[marks[1] :]
        del failures[marks[0] :], found[marks[1] :]
        report = None
        if manifest is not None and self.bag.is_file("data/report.html"):
            report = _ReportCheck(self.bag.stream("data/report.html"))
            report.write(report_head(manifest, checkpoint))
        job = _Job(checkpoint, heads, case_numbers(cases), report is not None)
        invoices = 0
        for seen in self._invoices(ranked["invoice"], job):
            if seen is not None:
                invoices += 1
                tally.seen("invoice", *seen[:3])
                if report is not None:
                    report.write(seen[3])
        failures += case_failures[0]
        found += case_failures[1]
        if report is not None:
            for view in cases:
                report.write(case_section(view))
            report.write(REPORT_TAIL)
            self.report_line = report.finish()
        self.result.invoices, self.result.cases = invoices, len(cases)
        return tally

    def _invoices(self, sids: list[str], job: _Job) -> Iterator[_Seen | None]:
        """Each invoice stream checked (None for one that could not be read as one), in the
        order given: here alone, or a slice at a time by this process and `workers` - 1
        forked ones (this one takes a little less than a `workers`-th of the slices: it also
        merges the others' results, in order, and compares the report), at most two slices
        ahead a process."""
        slices = [sids[i : i + SLICE] for i in range(0, len(sids), SLICE)]
        workers = min(self.workers, len(slices))
        if (
            workers < 2
            or len(sids) < PARALLEL_FROM
            or "fork" not in multiprocessing.get_all_start_methods()
        ):
            yield from self._checked(sids, job)
            return
        self.result.workers = workers
        _return_freed_memory()
        # Forked, the workers have this verifier as it is now (the open bag included): the
        # initializer's arguments are inherited, never pickled. A worker that dies (killed,
        # out of memory) fails the verify (BrokenProcessPool), it does not leave it waiting.
        with ProcessPoolExecutor(
            workers - 1,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_adopt,
            initargs=(self, job),
        ) as pool:
            pending: deque[tuple[list[str], Future[_Slice] | None]] = deque()
            # This process takes a little less than its share (it merges the rest too).
            share = 1 / (workers + 0.25)
            for k, part in enumerate(slices):  # (None: this process checks it)
                mine = int((k + 1) * share) > int(k * share)
                pending.append((part, None if mine else pool.submit(_check_slice, part)))
                if len(pending) > 2 * workers:
                    yield from self._take(*pending.popleft(), job)
            while pending:
                yield from self._take(*pending.popleft(), job)

    def _take(
        self, part: list[str], result: Future[_Slice] | None, job: _Job
    ) -> Iterator[_Seen | None]:
        """The slice `part` checked: here (no result), or as its worker checked it."""
        if result is None:
            yield from self._checked(part, job)
        else:
            yield from self._merge(result.result())

    def _checked(self, sids: list[str], job: _Job) -> Iterator[_Seen | None]:
        for sid in sids:
            view = self._stream("invoice", sid, job.checkpoint, job.heads)
            if view is None:
                yield None
                continue
            has, cited = _Tally.has(view, "invoice_key")
            section = invoice_section(view, job.numbers.get(sid, ())) if job.sections else ""
            yield sid, has, cited, section

    def checked_slice(self, sids: list[str], job: _Job) -> _Slice:
        """In a worker: the slice's streams checked, and what checking them changed here
        (failures, events counted, files expected and their digests), for `_merge`."""
        failures, found = self.result.failures, self.result.checks[self.check]
        marks, events = (len(failures), len(found)), self.result.events
        seen = list(self._checked(sids, job))
        added = failures[marks[0] :]
        del failures[marks[0] :], found[marks[1] :]
        files = []
        for sid in sids:
            at = self.bag.under(f"data/invoices/{sid}/")  # all that checking a stream reads
            if at:
                files.append(
                    (at.start, bytes(self.expected[at.start : at.stop]), *self.bag.hashes(at))
                )
        return _Slice(seen, added, self.result.events - events, files)

    def _merge(self, part: _Slice) -> list[_Seen | None]:
        for text in part.failures:
            self.fail(text)
        self.result.events += part.events
        # A stream's folder is read by the one process that checks the stream: what the
        # worker marked and hashed there is all there is.
        for start, expected, hashed, sha256 in part.files:
            self.expected[start : start + len(expected)] = expected
            self.bag.add_hashes(start, hashed, sha256)
        return part.seen

    def _stream(
        self, kind: str, sid: str, checkpoint: Checkpoint, heads: StreamHeads
    ) -> StreamView | None:
        where = f"data/{kind}s/{sid}"
        try:
            UUID(sid)
        except ValueError:
            self.fail(f"{where}: not a stream id")
            return None
        names = sorted(
            self.bag.children(f"{where}/events"),
            key=lambda n: (not n[:-5].isdigit(), int(n[:-5]) if n[:-5].isdigit() else 0, n),
        )
        aggregate: Any = None
        decoded: list[dict[str, Any]] = []
        last: dict[str, Any] | None = None
        for name in names:
            rel = f"{kind}s/{sid}/events/{name}"
            if not name.endswith(".json") or not name[:-5].isdigit():
                self.read(rel)
                self.fail(f"data/{rel}: not <position>.json")
                continue
            got = self._event(rel, sid, int(name[:-5]), checkpoint, aggregate)
            if got is None:
                continue
            leaf, event, view = got
            expected_version = (last["stream_version"] if last else 0) + 1
            if leaf["stream_version"] != expected_version:
                self.fail(
                    f"data/{rel}: version {leaf['stream_version']} follows "
                    f"{expected_version - 1}: versions are missing"
                )
            last = leaf
            if event is not None:
                try:
                    aggregate = event.mutate(aggregate)
                except Exception as e:  # noqa: BLE001 - reported, not raised
                    self.fail(f"data/{rel}: does not replay ({type(e).__name__}: {e})")
                    event = None
            if view is not None:
                decoded.append(view)
            self.result.events += 1
        self._head(kind, sid, last, heads)
        state = self._state(f"{kind}s/{sid}/state.json", aggregate)
        return StreamView(kind, sid, state, decoded)

    def _event(
        self, rel: str, stream_id: str, position: int, checkpoint: Checkpoint, aggregate: Any
    ) -> tuple[dict[str, Any], Any, dict[str, Any] | None] | None:
        raw = self.read(rel)
        proof_rel = rel.replace("/events/", "/proofs/")
        proof_raw = self.read(proof_rel)
        if raw is None or proof_raw is None:
            return None
        try:
            entry = fast_json.read(raw)
            proof = fast_json.read(proof_raw)
            leaf = entry["leaf"]
            state = base64.b64decode(entry["state_base64"], validate=True)
            if set(leaf) != LEAF_FIELDS or set(entry) != {"leaf", "state_base64", "decoded"}:
                raise ValueError("unexpected or missing fields")
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            self.fail(f"data/{rel}: unreadable ({e})")
            return None
        try:
            leaf_bytes: bytes | None = canonical_json.dumps(leaf)
        except Exception:  # noqa: BLE001 - not JSON RFC 8785 can write: not in the tree
            leaf_bytes = None
        # Decoded first (its failure is named after the checks below): when the file is the
        # exact bytes the sealed state gives, it is canonical and its "decoded" is right.
        decoded: tuple[Any, dict[str, Any], bytes | None] | None = None
        failed: str | None = None
        try:
            event = self._decode(leaf, state, aggregate)
            decoded = (event, *decoded_event_bytes(event, leaf))
        except (UnknownTopicError, ValueError) as e:
            failed = f"data/{rel}: {e}"
        except Exception as e:  # noqa: BLE001 - a bundle may hold anything; reported
            failed = f"data/{rel}: does not decode ({type(e).__name__}: {e})"
        exact = (
            decoded is not None
            and leaf_bytes is not None
            and decoded[2] is not None
            and raw == event_file(decoded[2], leaf_bytes, entry["state_base64"])
        )
        if not exact and canonical(entry) != raw:
            self.fail(f"data/{rel}: not canonical JSON (RFC 8785)")
        if leaf["stream_id"] != stream_id or leaf["position"] != position:
            self.fail(f"data/{rel}: leaf names another stream or position")
        if hashlib.sha256(state).hexdigest() != leaf["state_sha256"]:
            self.fail(f"data/{rel}: the state bytes do not match leaf.state_sha256")
        try:
            included = (
                leaf_bytes is not None
                and proof["tree_size"] == checkpoint.size
                and merkle.verify_inclusion(
                    int(proof["leaf_index"]),
                    checkpoint.size,
                    merkle.leaf_hash(leaf_bytes),
                    [bytes.fromhex(p) for p in proof["proof"]],
                    checkpoint.root,
                )
            )
        except (KeyError, TypeError, ValueError):
            included = False
        if not included:
            self.fail(f"data/{rel}: not in the tree the checkpoint signs (see {proof_rel})")
        if decoded is None:
            self.fail(failed or f"data/{rel}: does not decode")
            return leaf, None, None
        event, view, _ = decoded
        diff = None if exact else _difference(view, entry["decoded"], "decoded")
        if diff is not None:
            path, sealed, stated = diff
            self.fail(
                f"data/{rel}: {path}: the file says {_short(stated)}, "
                f"the sealed state says {_short(sealed)}"
            )
        return leaf, event, view

    def _decode(self, leaf: dict[str, Any], state: bytes, aggregate: Any) -> Any:
        """Only our own topics are resolved (item 7: nothing a bundle names is imported)."""
        if not isinstance(leaf["topic"], str) or not isinstance(leaf["stream_version"], int):
            raise ValueError("leaf.topic and leaf.stream_version have the wrong types")
        self.catalog.check_event(leaf["topic"])
        event = self.decoder.decode(
            UUID(leaf["stream_id"]), leaf["stream_version"], leaf["topic"], state
        )
        if isinstance(event, AggregateCreated):
            self.catalog.check_aggregate(str(event.originator_topic))
        elif aggregate is None:
            raise ValueError("the stream does not start with its created event")
        return event

    def _head(
        self, kind: str, stream_id: str, last: dict[str, Any] | None, heads: StreamHeads
    ) -> None:
        rel = f"{kind}s/{stream_id}/head.json"
        raw = self.read(rel)
        if raw is None:
            return
        try:
            doc = fast_json.read(raw)
            head = doc["head"]
            ok = (
                doc["tree_size"] == heads.count
                and head.get("stream_id") == stream_id
                and merkle.verify_inclusion(
                    int(doc["leaf_index"]),
                    heads.count,
                    merkle.leaf_hash(canonical_json.dumps(head)),
                    [bytes.fromhex(p) for p in doc["proof"]],
                    heads.root,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            self.fail(f"data/{rel}: unreadable ({e})")
            return
        if not ok:
            self.fail(f"data/{rel}: not in the stream heads the checkpoint signs")
            return
        held = last["stream_version"] if last else 0
        if last is None or (head["last_version"], head["last_position"]) != (
            last["stream_version"],
            last["position"],
        ):
            self.fail(
                f"data/{kind}s/{stream_id}: the log's head is version {head['last_version']} at "
                f"position {head['last_position']}; the bundle holds versions 1..{held}"
                + ("" if last is None else f" ending at position {last['position']}")
                + " (events missing?)"
            )

    def _state(self, rel: str, aggregate: Any) -> dict[str, Any]:
        derived, derived_bytes = (
            derived_state_bytes(aggregate)
            if aggregate is not None
            else ({"derived": True}, b'{"derived":true}')
        )
        raw = self.read(rel)
        if raw is None or raw == derived_bytes:
            return derived
        try:
            stated = fast_json.read(raw)
        except ValueError as e:
            self.fail(f"data/{rel}: unreadable ({e})")
            return derived
        diff = _difference(derived, stated, "state")
        if diff is not None:
            path, replayed, said = diff
            self.fail(
                f"data/{rel}: {path}: the file says {_short(said)}, replaying the events "
                f"gives {_short(replayed)}"
            )
        return derived

    # ---- the manifest's promises ----

    def _against_manifest(self, manifest: dict[str, Any], streams: _Tally) -> None:
        for kind, label in (("invoice", "invoice_key"), ("case", "number")):
            said, found = streams.said[kind], streams.found[kind]
            for sid, i in sorted(streams.order[kind].items()):
                if not found[i]:
                    self.fail(
                        f"data/manifest.txt: lists {kind} {sid} ({said[i][0]}); "
                        f"the bundle has no data/{kind}s/{sid} (dropped?)"
                    )
            for sid in sorted(streams.unlisted[kind]):
                self.fail(f"data/{kind}s/{sid}: not in the signed manifest")
            for sid, said, has in sorted(streams.differ[kind]):
                self.fail(
                    f"data/{kind}s/{sid}: the manifest says {label}, version and position "
                    f"{said}; the bundle holds {has}"
                )

    def _attachments(self, manifest: dict[str, Any], streams: _Tally) -> None:
        cited = streams.cited
        kept = set(manifest.get("attachments", []))
        declared = kept | set(manifest.get("attachments_not_kept", []))
        present = set(self.bag.children("data/attachments"))
        for sha in sorted(present):
            data = self.read(f"attachments/{sha}")
            if data is not None and hashlib.sha256(data).hexdigest() != sha:
                self.fail(f"data/attachments/{sha}: its content does not hash to its name")
        for sha in sorted(kept - present):
            self.fail(f"data/attachments/{sha}: listed in the manifest, missing (dropped?)")
        for sha in sorted(present - kept):
            self.fail(f"data/attachments/{sha}: not in the signed manifest")
        for sha in sorted(cited - declared):
            self.fail(f"data/manifest.txt: attachments: {sha} is cited by an event, not listed")
        for sha in sorted(declared - cited):
            self.fail(f"data/manifest.txt: attachments: {sha} is cited by no event")
        self.result.attachments = len(present & kept)

    def _consistency(self, manifest: dict[str, Any], checkpoint: Checkpoint) -> None:
        listed = manifest.get("known_checkpoint")
        held: Checkpoint | None = None
        if listed is not None:
            raw = self.read(f"checkpoints/{listed['tree_size']}.txt")
            held = None if raw is None else self._held("bundle", raw.decode("utf-8", "replace"))
            if held is not None and (held.size, held.root_b64) != (
                listed["tree_size"],
                listed["root"],
            ):
                self.fail("data/manifest.txt: known_checkpoint differs from data/checkpoints/")
            if held is not None:
                self._extends(held, checkpoint, "data/checkpoints/")
        if self.known is not None:
            mine = self._held("yours", self.known)
            if mine is None:
                return
            self.result.known_size = mine.size
            if mine.origin != checkpoint.origin:
                self.fail(
                    f"data/checkpoint.txt: the bundle's log is {checkpoint.origin!r}, "
                    f"the checkpoint you hold is of {mine.origin!r}"
                )
            elif mine.size > checkpoint.size:
                self.fail(
                    f"data/checkpoint.txt: the bundle's checkpoint (size {checkpoint.size}) is "
                    f"older than the one you hold (size {mine.size}): rolled back?"
                )
            else:
                self._extends(mine, checkpoint, "the checkpoint you hold")

    def _held(self, whose: str, text: str) -> Checkpoint | None:
        name = "checkpoints/" if whose == "bundle" else "--known-checkpoint"
        try:
            body, sigs = parse_signed_note(text)
            held = parse_checkpoint(body)
        except NoteFormatError as e:
            self.fail(f"{name}: {e}")
            return None
        if not any(
            verify_note_signature(body, s, k.public_key) and s.key_id == k.key_id
            for s in sigs
            for k in self.keys
        ):
            self.fail(f"{name}: no valid signature by the log's key")
        return held

    def _extends(self, held: Checkpoint, checkpoint: Checkpoint, what: str) -> None:
        m, n = held.size, checkpoint.size
        if m == n:
            if held.root != checkpoint.root:
                self.fail(f"data/checkpoint.txt: same size as {what}, another root: a fork")
            return
        rel = f"consistency/{m}-{n}.json"
        if not self.bag.is_file(f"data/{rel}"):
            self.fail(
                f"data/{rel}: missing; nothing shows this log extends {what} (size {m}); "
                "export with --since-checkpoint"
            )
            return
        raw = self.read(rel)
        try:
            doc = json.loads(raw or b"")
            ok = (doc["first"], doc["second"]) == (m, n) and merkle.verify_consistency(
                m, n, held.root, checkpoint.root, [bytes.fromhex(p) for p in doc["proof"]]
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            self.fail(f"data/{rel}: the log does not extend {what} (size {m}): a fork?")

    # ---- anchors ----

    def _timestamps(self) -> None:
        """Each data/timestamps/<i>.tsr: a granted token over SHA-256 of the checkpoint's body
        whose TSA certificate chains to a CA given (--tsa-ca); at least one if any CA is."""
        names = sorted(
            (n[5:] for n in self.bag.file_names("data/timestamps/")),
            key=lambda n: (len(n), n),
        )
        if self.checkpoint_text is None:
            return
        body = self.checkpoint_text[0]
        for name in names:
            if not name.endswith(".tsr") or "/" in name.removeprefix("timestamps/"):
                continue  # not a bundle file: the files check names it
            self._expect(name)
            if not self.anchors.tsa_cas:
                continue  # kept, not checked: no CA was given to check it against
            try:
                gen_time = verify_token(
                    self.bag.read(f"data/{name}") or b"", body, list(self.anchors.tsa_cas)
                )
            except TimestampError as e:
                self.fail(f"data/{name}: the timestamp token does not verify: {e}")
                continue
            self.result.timestamps.append((name, gen_time))
        if (
            self.anchors.tsa_cas
            and not self.result.timestamps
            and not self.result.checks["timestamps"]
        ):
            self.fail("data/timestamps/: no timestamp token by a TSA you trust (--tsa-ca)")

    def _witnesses(self) -> None:
        """Cosignature lines of checkpoint.txt by the witness keys given (--witness-key): each
        must verify; at least --min-witnesses distinct witnesses must have cosigned."""
        if self.checkpoint_text is None:
            return
        body, sigs = self.checkpoint_text
        valid: set[str] = set()
        for key in self.anchors.witness_keys:
            for sig in sigs:
                if sig.key_name != key.name or sig.key_id != key.key_id:
                    continue
                stamp = verify_cosignature(sig, key, body)
                if stamp is None:
                    self.fail(f"data/checkpoint.txt: the cosignature of {key.name} does not verify")
                elif key.name not in valid:
                    valid.add(key.name)
                    self.result.witnesses.append((key.name, datetime.fromtimestamp(stamp, UTC)))
        need = self.anchors.min_witnesses
        if len(valid) < need:
            self.fail(
                f"data/checkpoint.txt: cosigned by {len(valid)} of the witnesses you trust, "
                f"{need} required (--min-witnesses)"
            )

    def _earliest(self) -> None:
        times = [(t, f"TSA token {n}") for n, t in self.result.timestamps] + [
            (t, f"cosignature of {w}") for w, t in self.result.witnesses
        ]
        self.result.earliest = min(times) if times else None

    def _report(self) -> None:
        """report.html against the one rebuilt from the sealed events (compared while the
        streams were checked)."""
        self._expect("report.html")
        if not self.bag.is_file("data/report.html"):
            self.fail("data/report.html: missing")
        elif self.report_line is not None:
            self.fail(
                f"data/report.html: differs from the report rebuilt from the sealed events "
                f"(first at line {self.report_line})"
            )

    def _bag_info(self, manifest: dict[str, Any]) -> None:
        info = read_tags(self.bag.read("bag-info.txt") or b"")
        expect = {
            "External-Identifier": manifest.get("bundle_id"),
            "Organization-Identifier": manifest.get("tenant", {}).get("taxpayer_code"),
            "Fapiao-Checkpoint-Size": str(manifest.get("log", {}).get("tree_size")),
            "Fapiao-Log-Origin": manifest.get("log", {}).get("origin"),
        }
        for tag, value in expect.items():
            if info.get(tag) != value:
                self.fail(f"bag-info.txt: {tag} is {info.get(tag)!r}; the manifest says {value!r}")

    def _unexpected_files(self) -> None:
        for at in self.bag.under("data/"):
            if not self.expected[at]:
                self.fail(f"{self.bag.names[at]}: not part of a bundle (unexpected file)")


class _Tally:
    """What the manifest and attachment checks need of the streams once they are checked:
    per kind, which of the manifest's entries a stream was found for (by their place in it),
    the streams it does not list, and those whose head it states otherwise; every attachment
    the streams cite."""

    def __init__(self, manifest: dict[str, Any] | None) -> None:
        # Each entry as (invoice key or case number, last version, last position): the
        # manifest's lists are taken out of it (nothing else reads them), for these tuples.
        self.said: dict[str, list[tuple[Any, Any, Any]]] = {}
        self.order: dict[str, dict[str, int]] = {}  # a stream id: its (last) place in the list
        self.found: dict[str, bytearray] = {}
        self.unlisted: dict[str, list[str]] = {}
        self.differ: dict[str, list[tuple[str, tuple[Any, ...], tuple[Any, ...]]]] = {}
        for kind, label in (("invoice", "invoice_key"), ("case", "number")):
            entries = manifest.pop(f"{kind}s") if manifest else []
            self.said[kind] = [
                (e.get(label), e.get("last_version"), e.get("last_position")) for e in entries
            ]
            self.order[kind] = {e["stream_id"]: i for i, e in enumerate(entries)}
            self.found[kind] = bytearray(len(entries))
            del entries
            self.unlisted[kind], self.differ[kind] = [], []
        self.cited: set[str] = set()

    @staticmethod
    def has(view: StreamView, label: str) -> tuple[tuple[Any, Any, Any], list[str]]:
        """What the manifest's entry should say of the stream, and the attachments it cites."""
        last = view.events[-1] if view.events else None
        has = (
            view.state.get(label),
            last["version"] if last else None,
            last["position"] if last else None,
        )
        return has, [r["sha256"] for r in attachment_refs(view.events)]

    def add(self, view: StreamView, label: str) -> None:
        self.seen(view.kind, view.stream_id, *self.has(view, label))

    def seen(self, kind: str, stream_id: str, has: tuple[Any, Any, Any], cited: list[str]) -> None:
        self.cited.update(cited)
        i = self.order[kind].get(stream_id)
        if i is None:
            self.unlisted[kind].append(stream_id)
            return
        self.found[kind][i] = 1
        said = self.said[kind][i]
        if said != has:
            self.differ[kind].append((stream_id, said, has))


# An invoice stream checked: its id, what its manifest entry should say, the attachments it
# cites, its section of report.html ("" when there is no report to compare).
_Seen = tuple[str, tuple[Any, Any, Any], list[str], str]


@dataclass(frozen=True)
class _Job:
    """What checking any invoice stream needs besides the bag."""

    checkpoint: Checkpoint
    heads: StreamHeads
    numbers: dict[str, Any]  # a stream id: the case numbers naming it
    sections: bool  # rebuild each invoice's section of report.html


@dataclass(frozen=True)
class _Slice:
    """A worker's slice of invoice streams, checked: each one's `_Seen` (or None), the
    failures found, the events counted, and per stream folder (its first place in the bag)
    which files were expected, which read and their SHA-256."""

    seen: list[_Seen | None]
    failures: list[str]
    events: int
    files: list[tuple[int, bytes, bytes, bytes]]


def _return_freed_memory() -> None:
    """What this process freed (the manifest read, the directory's sorting) glibc keeps for
    reuse: give it back to the system before forking (malloc_trim), or every worker would
    keep its own copy of those pages once this process reuses them. Where the C library has
    no malloc_trim (macOS, musl), nothing. At 10k invoices: +35 -> +32.5-34 MB in all."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


_adopted: tuple[_Verifier, _Job] | None = None  # in a forked worker: what it checks for


def _adopt(verifier: _Verifier, job: _Job) -> None:
    global _adopted
    _adopted = (verifier, job)


def _check_slice(sids: list[str]) -> _Slice:
    assert _adopted is not None, "only in a worker the verifier forked"
    verifier, job = _adopted
    return verifier.checked_slice(sids, job)


class _ReportCheck:
    """report.html compared, as it streams out of the zip, with the report rebuilt piece by
    piece; `finish` gives the first line where they differ (None if they are the same), the
    line the whole-file comparison (split at newlines) would name."""

    def __init__(self, theirs: Iterator[bytes]) -> None:
        self.theirs = theirs
        self.buf, self.at = b"", 0  # their latest piece, and how far it has been compared
        self.lines = 0  # newlines in what matched so far
        self.line: int | None = None

    def _differ_after(self, longer: bytes) -> None:
        # One side ended where the other goes on: the same line still, if the other starts a
        # new line there; else this line differs.
        self.line = self.lines + (2 if longer[:1] == b"\n" else 1)

    def write(self, text: str) -> None:
        ours = text.encode()
        done = 0
        while done < len(ours) and self.line is None:
            if self.at == len(self.buf):
                self.buf, self.at = next(self.theirs, b""), 0
                if not self.buf:
                    self._differ_after(ours[done:])
                    return
            n = min(len(ours) - done, len(self.buf) - self.at)
            a, b = ours[done : done + n], self.buf[self.at : self.at + n]
            if a != b:
                same = len(os.path.commonprefix([a, b]))
                self.line = self.lines + a.count(b"\n", 0, same) + 1
                return
            self.lines += a.count(b"\n")
            done += n
            self.at += n

    def finish(self) -> int | None:
        if self.line is None:
            rest = self.buf[self.at :] or next(self.theirs, b"")
            if rest:
                self._differ_after(rest)
        for _ in self.theirs:  # read to the end (BagIt takes its digest from this read)
            pass
        return self.line


MANIFEST_SHAPE: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "bundle_id": str,
    "tenant": dict,
    "exported_at": str,
    "exported_by": dict,
    "selection": dict,
    "log": dict,
    "known_checkpoint": (dict, type(None)),
    "invoices": list,
    "cases": list,
    "attachments": list,
    "attachments_not_kept": list,
}


def _check_shape(manifest: dict[str, Any]) -> None:
    for key, kind in MANIFEST_SHAPE.items():
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{key}: missing or of the wrong type")
    if (
        not {"taxpayer_code", "name"} <= set(manifest["tenant"])
        or "actor" not in manifest["exported_by"]
    ):
        raise ValueError("tenant or exported_by: missing fields")
    for kind in ("invoices", "cases"):
        for entry in manifest[kind]:
            if not isinstance(entry, dict) or not isinstance(entry.get("stream_id"), str):
                raise ValueError(f"{kind}: every entry names its stream_id")
    known = manifest["known_checkpoint"]
    if known is not None and not isinstance(known.get("tree_size"), int):
        raise ValueError("known_checkpoint: tree_size")


def _difference(sealed: Any, stated: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first place where two JSON values differ, as a dotted path."""
    if isinstance(sealed, dict) and isinstance(stated, dict):
        for key in sorted(set(sealed) | set(stated)):
            if key not in sealed or key not in stated:
                return f"{path}.{key}", sealed.get(key, "(absent)"), stated.get(key, "(absent)")
            found = _difference(sealed[key], stated[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(sealed, list) and isinstance(stated, list):
        for i, (a, b) in enumerate(zip(sealed, stated, strict=False)):
            found = _difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(sealed) != len(stated):
            return f"{path}", f"{len(sealed)} items", f"{len(stated)} items"
        return None
    same = type(sealed) is type(stated) and sealed == stated
    return None if same else (path, sealed, stated)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
