"""What a bundle's readable files say, as pure functions of sealed data, so that the exporter
writes them and the verifier rebuilds them byte for byte from the sealed state bytes:

- `decoded` (in each event file): the event as the product reads it from its stored state;
- `state.json`: the aggregate replayed from the stream's events (marked derived);
- the manifest: who exported what, when, against which checkpoint (signed by the log key);
- `report.html`: what an inspector reads, from the manifest, the checkpoint and the streams.

Nothing here reads a clock or a database: the same inputs always give the same bytes.
"""

from __future__ import annotations

import codecs
import html
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785

from application.evidence import canonical_json
from application.invoices.ledger import NOT_DATA, _jsonable
from domain.base import LedgerEvent
from domain.calendar import SHANGHAI
from domain.evidence.checkpoint import Checkpoint, StreamHeads

MANIFEST_TITLE = "fapiao-ledger bundle manifest v1"
BUNDLE_FORMAT = "fapiao-ledger evidence bundle v2"


def canonical(value: Any) -> bytes:
    """RFC 8785 JSON (what every JSON file of a bundle is)."""
    try:
        return canonical_json.dumps_plain(canonical_json.plain(value))
    except canonical_json.NotPlainError:
        return rfc8785.dumps(_jsonable(value))


def as_json(value: Any) -> Any:
    """The value as its JSON reads back (keys sorted, plain types), as both sides compare it.
    (The stdlib's encoder: these values hold no floats, where it and RFC 8785 differ; plain
    values, checked in one walk, are RFC 8785 and read back the same.)"""
    try:
        return canonical_json.loads(canonical_json.dumps_plain(canonical_json.plain(value)))
    except canonical_json.NotPlainError:
        return json.loads(json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False))


def as_json_bytes(value: Any) -> tuple[Any, bytes | None]:
    """`as_json(value)` but for the order of its keys (which nothing reading it relies on),
    and its RFC 8785 bytes (`canonical` of it), from one walk and one encoding; None for the
    bytes of a value RFC 8785 cannot write (an integer beyond 2**53, say)."""
    try:
        converted = canonical_json.plain(value)
        return converted, canonical_json.dumps_plain(converted)
    except canonical_json.NotPlainError:
        read = json.loads(json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False))
        try:
            return read, canonical(read)
        except Exception:  # noqa: BLE001 - whoever writes it gets rfc8785's refusal
            return read, None


def event_file(decoded: bytes, leaf: bytes, state_base64: str) -> bytes:
    """events/<position>.json, `canonical({"leaf", "state_base64", "decoded"})`, from the
    canonical bytes of its parts (RFC 8785 writes an object as its members' canonical bytes,
    keys sorted: decoded, leaf, state_base64; base64 needs no escaping)."""
    return b"".join(
        (
            b'{"decoded":',
            decoded,
            b',"leaf":',
            leaf,
            b',"state_base64":"',
            state_base64.encode(),
            b'"}',
        )
    )


def decoded_event(event: LedgerEvent, leaf: dict[str, Any]) -> dict[str, Any]:
    """The readable form of a sealed event: from its leaf and its decoded stored state."""
    return as_json(_decoded(event, leaf, _jsonable))  # type: ignore[no-any-return]


def decoded_event_bytes(
    event: LedgerEvent, leaf: dict[str, Any]
) -> tuple[dict[str, Any], bytes | None]:
    """`decoded_event` (keys in any order) and its canonical bytes."""
    return as_json_bytes(_decoded(event, leaf, _same))


def _same(value: Any) -> Any:
    return value


def _decoded(
    event: LedgerEvent, leaf: dict[str, Any], jsonable: Callable[[Any], Any]
) -> dict[str, Any]:
    # as_json_bytes converts what _jsonable would (times, Decimals, UUIDs) in its own walk
    # and applies _jsonable itself where it takes the slow path, so it is given the values.
    return {
        "position": leaf["position"],
        "version": leaf["stream_version"],
        "topic": leaf["topic"],
        "type": type(event).__name__,
        "recorded_at": leaf["recorded_at"],
        "actor": event.actor,
        "source": event.source,
        "occurred_at": event.occurred_at.isoformat(),
        "data": {k: jsonable(v) for k, v in vars(event).items() if k not in NOT_DATA},
    }


def derived_state(aggregate: object) -> dict[str, Any]:
    """state.json: the replayed aggregate's attributes, marked as derived."""
    return as_json(_state(aggregate, _jsonable))  # type: ignore[no-any-return]


def derived_state_bytes(aggregate: object) -> tuple[dict[str, Any], bytes | None]:
    """`derived_state` (keys in any order) and its canonical bytes (state.json)."""
    return as_json_bytes(_state(aggregate, _same))


def _state(aggregate: object, jsonable: Callable[[Any], Any]) -> dict[str, Any]:
    state = {
        k.lstrip("_"): jsonable(v) for k, v in vars(aggregate).items() if k != "_pending_events"
    }
    return {"derived": True, **state}


def attachment_refs(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every file a stream's decoded events cite (by SHA-256), first citation first."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        for ref in _refs(event["data"]):
            found.setdefault(ref["sha256"], ref)
    return list(found.values())


def _refs(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if {"sha256", "name", "media_type", "size"} <= set(value):
            yield value
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


# ---- the manifest ----------------------------------------------------------------------------


def manifest_text(manifest: dict[str, Any]) -> str:
    """The text the log key signs: a title line, then the manifest as one line of JCS."""
    return f"{MANIFEST_TITLE}\n{canonical(manifest).decode()}\n"


_DECODER = json.JSONDecoder()


def read_manifest_text(text: str) -> dict[str, Any]:
    """The manifest of a manifest note's text (ValueError unless it is one canonical line).
    Read in place: a 10,000-invoice manifest is MBs, and no copy of its line is made."""
    start, end = len(MANIFEST_TITLE) + 1, len(text) - 1  # where the JSON line is
    if (
        not text.startswith(MANIFEST_TITLE + "\n")
        or end < start
        or text[end] != "\n"
        or text.find("\n", start, end) >= 0
    ):
        raise ValueError(f"not a manifest: the text is {MANIFEST_TITLE!r} and one JSON line")
    try:
        manifest, stop = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        stop = -1
    if stop != end:  # not the line alone: json.loads says what is wrong, as it always did
        manifest = json.loads(text[start:])
    # The parsed values are JSON's own, for which canonical_json.dumps is `canonical` (without
    # the copy `canonical_json.plain` makes), here compared a piece at a time.
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not canonical JSON (RFC 8785)")
    try:
        same = _is_line(canonical_json.dumps_pieces(manifest), text, start)
    except canonical_json.NotPlainError:
        same = _is_line([canonical_json.dumps(manifest)], text, start)
    if not same:
        raise ValueError("the manifest is not canonical JSON (RFC 8785)")
    return manifest


def _is_line(pieces: Iterable[bytes], text: str, start: int) -> bool:
    """`b"".join(pieces) == text[start:-1].encode()`, a piece at a time (no copy of text)."""
    decode = codecs.getincrementaldecoder("utf-8")("strict").decode
    at = start
    try:
        for data in pieces:
            piece = decode(data)
            if not text.startswith(piece, at):
                return False
            at += len(piece)
        piece = decode(b"", True)
    except UnicodeDecodeError:
        return False
    return text.startswith(piece, at) and at + len(piece) == len(text) - 1


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    heads = checkpoint.stream_heads() or StreamHeads(0, b"")
    return {
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root": checkpoint.root_b64,
        "stream_heads": {"count": heads.count, "root": heads.root_b64},
    }


# ---- the report ------------------------------------------------------------------------------

EVENT_NAMES: dict[str, tuple[str, str]] = {
    "fapiao.invoice.issued.v1": ("开具登记", "Issued"),
    "fapiao.invoice.submitted.v1": ("上传平台", "Submitted to the platform"),
    "fapiao.invoice.submission_failed.v1": ("上传失败", "Submission failed"),
    "fapiao.invoice.acknowledged.v1": ("平台已确认", "Acknowledged by the platform"),
    "fapiao.invoice.rejected.v1": ("平台拒收", "Rejected by the platform"),
    "fapiao.invoice.marked_missing.v1": ("平台缺失", "Marked missing"),
    "fapiao.invoice.voided.v1": ("作废", "Voided"),
    "fapiao.invoice.red_reversed.v1": ("红字冲销", "Red-letter reversal"),
    "fapiao.invoice.re_entered.v1": ("补录重新上传", "Re-entered (supplementary entry)"),
    "fapiao.reentry_application.drafted.v1": ("补录申请起草", "Application drafted"),
    "fapiao.reentry_application.correction_recorded.v1": ("补录信息更正", "Correction recorded"),
    "fapiao.reentry_application.attachment_added.v1": ("添加附件", "Attachment added"),
    "fapiao.reentry_application.submitted.v1": ("提交审核", "Submitted for review"),
    "fapiao.reentry_application.reviewed.v1": ("初审通过", "Review passed"),
    "fapiao.reentry_application.approved.v1": ("审批通过", "Approved"),
    "fapiao.reentry_application.returned.v1": ("退回修改", "Returned"),
    "fapiao.reentry_application.withdrawn.v1": ("撤回", "Withdrawn"),
    "fapiao.reentry_application.review_overdue.v1": ("审核逾期", "Review overdue"),
    "fapiao.complaint.lodged.v1": ("投诉登记", "Complaint lodged"),
    "fapiao.complaint.evidence_added.v1": ("添加证据", "Evidence added"),
    "fapiao.complaint.exchange_logged.v1": ("沟通记录", "Exchange logged"),
    "fapiao.complaint.reply_deadline_set.v1": ("答复期限", "Reply deadline set"),
    "fapiao.complaint.reply_reminder_due.v1": ("答复提醒", "Reply reminder"),
    "fapiao.complaint.reply_overdue.v1": ("答复逾期", "Reply overdue"),
    "fapiao.complaint.escalated.v1": ("升级处理", "Escalated"),
    "fapiao.complaint.escalation_overdue.v1": ("升级逾期", "Escalation overdue"),
    "fapiao.complaint.resolved.v1": ("结案", "Resolved"),
}
STATUS_NAMES = {
    "issued": ("已开具", "issued"),
    "submitted": ("已上传", "submitted"),
    "submission_failed": ("上传失败", "submission failed"),
    "acknowledged": ("平台已确认", "acknowledged"),
    "rejected": ("平台拒收", "rejected"),
    "missing": ("平台缺失", "missing"),
    "voided": ("已作废", "voided"),
    "partially_reversed": ("部分红冲", "partially reversed"),
    "reversed": ("全额红冲", "reversed"),
    "re_entered": ("已补录", "re-entered"),
}
TYPE_NAMES = {
    "digital_special": ("数电专票", "fully digital special"),
    "digital_ordinary": ("数电普票", "fully digital ordinary"),
    "digital_paper_special": ("数电纸质专票", "fully digital paper special"),
    "digital_paper_ordinary": ("数电纸质普票", "fully digital paper ordinary"),
    "legacy_special_paper": ("增值税专用发票", "VAT special (paper)"),
    "legacy_ordinary_paper": ("增值税普通发票", "VAT ordinary (paper)"),
    "legacy_special_electronic": ("增值税电子专用发票", "VAT special (electronic)"),
    "legacy_ordinary_electronic": ("增值税电子普通发票", "VAT ordinary (electronic)"),
}
CASE_KINDS = {
    "fapiao.reentry_application": ("补录申请", "supplementary entry"),
    "fapiao.complaint": ("投诉", "complaint"),
    "fapiao.lost_invoice_case": ("发票遗失", "lost invoice"),
}
VERIFY_STEPS = [
    ("校验 BagIt 清单（manifest-sha256.txt）。", "Validate the BagIt manifests."),
    (
        "用可信的日志公钥核验 checkpoint.txt 与 manifest.txt 的 Ed25519 签名。",
        "Check the Ed25519 signatures of checkpoint.txt and manifest.txt with a log key you trust.",
    ),
    (
        "对每个事件：状态字节的 SHA-256 等于 leaf.state_sha256；叶子哈希的包含证明得出检查点根。",
        "For each event: SHA-256 of its state bytes is leaf.state_sha256, and its inclusion "
        "proof gives the checkpoint's root.",
    ),
    (
        "对每条流：head.json 的包含证明得出检查点的流头根；"
        "事件版本 1..n 齐全，最后一个位于该位置。",
        "For each stream: head.json's proof gives the checkpoint's stream-heads root; versions "
        "1..n are all present and the last is at that position.",
    ),
    (
        "清单列出的发票、案件和附件与包内一致；解码内容、state.json 与本报告可由事件重建。",
        "The manifest's invoices, cases and files are those in the bundle; decoded fields, "
        "state.json and this report are rebuilt from the events.",
    ),
]


@dataclass(frozen=True)
class StreamView:
    """One stream of the bundle as the report shows it."""

    kind: str  # "invoice" or "case"
    stream_id: str
    state: dict[str, Any]
    events: list[dict[str, Any]]


def beijing(text: str) -> str:
    """An ISO time as Beijing time with its offset (`2026-11-20 10:00:00+08:00`)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return str(text)
    if moment.tzinfo is None:
        return moment.isoformat(sep=" ")
    return moment.astimezone(SHANGHAI).isoformat(sep=" ", timespec="seconds")


def person(actor: str) -> str:
    """Who, as a person where one is known: `key:k1/user:zhang.san` -> `zhang.san (key k1)`."""
    parts = dict(p.partition(":")[::2] for p in actor.split("/"))
    for kind in ("user", "cli", "demo", "sim"):
        if parts.get(kind):
            rest = [f"{k} {v}" for k, v in parts.items() if k != kind]
            return parts[kind] + (f" ({', '.join(rest)})" if rest else "")
    if "key" in parts and len(parts) == 1:
        return f"API 密钥 API key {parts['key']}"
    return actor


_ESCAPED: dict[str, str] = {}


def _e(value: Any) -> str:
    text = "" if value is None else str(value)
    found = _ESCAPED.get(text)
    if found is None:
        found = html.escape(text)
        if len(text) <= 200:  # the report's repeated words: names, codes, actors, topics
            if len(_ESCAPED) >= 10_000:
                _ESCAPED.clear()
            _ESCAPED[text] = found
    return found


def _pair(names: dict[str, tuple[str, str]], key: str) -> str:
    zh, en = names.get(key, (key, key))
    return _e(zh) if zh == en else f"{_e(zh)} {_e(en)}"


def _details(event: dict[str, Any]) -> str:
    keep = [
        (k, v)
        for k, v in sorted(event["data"].items())
        if k not in ("tenant_id", "lines", "invoice_key") and v not in (None, "", [], {})
    ]
    return "; ".join(
        f"{_e(k)}={_e(v if isinstance(v, str) else canonical(v).decode())}" for k, v in keep
    )


def render_report(
    manifest: dict[str, Any], checkpoint: Checkpoint, streams: Sequence[StreamView]
) -> str:
    """report.html, deterministic: the same manifest, checkpoint and streams give the same bytes.
    (`report_head`, then `invoice_section` per invoice, `case_section` per case, `REPORT_TAIL`:
    the exporter and the verifier write it piece by piece as the streams go by.)"""
    cases = [s for s in streams if s.kind == "case"]
    numbers = case_numbers(cases)
    out = [report_head(manifest, checkpoint)]
    for stream in streams:
        if stream.kind == "invoice":
            out.append(invoice_section(stream, numbers.get(stream.stream_id, ())))
    for stream in cases:
        out.append(case_section(stream))
    out.append(REPORT_TAIL)
    return "".join(out)


def report_head(manifest: dict[str, Any], checkpoint: Checkpoint) -> str:
    """The report up to its first invoice: the bundle, who exported it, the checkpoint."""
    heads = checkpoint.stream_heads() or StreamHeads(0, b"")
    tenant = manifest["tenant"]
    by = manifest["exported_by"]
    out = [
        "<!doctype html>\n<html lang=zh>\n<meta charset=utf-8>\n",
        "<title>发票证据包 Invoice evidence bundle</title>\n",
        "<h1>发票证据包 Invoice evidence bundle</h1>\n",
        f"<p>企业 Company: {_e(tenant['name'])} 纳税人识别号 Taxpayer code: "
        f"<code>{_e(tenant['taxpayer_code'])}</code></p>\n",
        f"<p>证据包 Bundle <code>{_e(manifest['bundle_id'])}</code>; 导出人 Exported by "
        f"{_e(person(by['actor']))}; 导出时间 Exported at {_e(beijing(manifest['exported_at']))}"
        "</p>\n",
        f"<p>签名检查点 Signed checkpoint: {_e(checkpoint.origin)}, 大小 size "
        f"{checkpoint.size}, 根 root <code>{_e(checkpoint.root_b64)}</code>; 流头 stream heads "
        f"{heads.count}, 根 root <code>{_e(heads.root_b64)}</code></p>\n",
    ]
    known = manifest.get("known_checkpoint")
    if known:
        out.append(
            f"<p>已知检查点 Checkpoint you held: size {_e(known['tree_size'])}, root "
            f"<code>{_e(known['root'])}</code>; 一致性证明见 consistency/ (the consistency proof "
            "is in consistency/).</p>\n"
        )
    return "".join(out)


REPORT_TAIL = (
    "<h2>验证步骤 How to verify</h2>\n<ol>\n"
    + "".join(f"<li>{_e(zh)}<br>{_e(en)}</li>\n" for zh, en in VERIFY_STEPS)
    + "</ol>\n<p>检查点仅由日志运营方签名，不能证明运营方从未重建日志；请保存收到的检查点并用一致性"
    "证明比对。 A checkpoint signed only by the log's operator cannot prove the operator "
    "never rebuilt the log: keep the checkpoints you receive and compare them with "
    "consistency proofs.</p>\n</html>\n"
)


def case_numbers(cases: Iterable[StreamView]) -> dict[str, set[str]]:
    """invoice id -> the numbers of the cases naming it (what an invoice's section lists)."""
    numbers: dict[str, set[str]] = {}
    for case in cases:
        for invoice_id in invoices_of(case.state):
            numbers.setdefault(invoice_id, set()).add(str(case.state.get("number")))
    return numbers


def invoice_section(stream: StreamView, case_numbers: Iterable[str]) -> str:
    """One invoice's part of the report; `case_numbers`: the cases naming it."""
    issued = stream.events[0]["data"] if stream.events else {}
    state = stream.state
    numbers = sorted(
        set(case_numbers)
        | {
            str(e["data"]["application_number"])
            for e in stream.events
            if e["data"].get("application_number")
        }
    )
    parts = [
        f"<h2>发票 Invoice {_e(state.get('invoice_key'))}</h2>\n<ul>\n",
        f"<li>类型 Type: {_pair(TYPE_NAMES, str(state.get('invoice_type')))}; "
        f"方向 direction: {_e(issued.get('direction'))}; 开票日期 issued on "
        f"{_e(issued.get('issued_on'))}</li>\n",
        f"<li>销方 Seller: {_e(issued.get('seller_name'))} <code>{_e(issued.get('seller_code'))}"
        f"</code>; 购方 Buyer: {_e(issued.get('buyer_name'))} <code>"
        f"{_e(issued.get('buyer_code'))}</code></li>\n",
        f"<li>金额 Amount {_e(issued.get('amount'))}; 税额 Tax {_e(issued.get('tax'))}; "
        f"价税合计 Total {_e(issued.get('total'))}</li>\n",
        f"<li>状态 Status: {_pair(STATUS_NAMES, str(state.get('status')))}</li>\n",
        f"<li>案件 Cases: {_e(', '.join(numbers) or '—')}</li>\n</ul>\n",
    ]
    return "".join(parts) + _timeline(stream.events)


def invoices_of(case_state: dict[str, Any]) -> set[str]:
    """The invoices a case's state names."""
    ids = case_state.get("invoice_ids") or []
    single = case_state.get("invoice_id")
    return {str(i) for i in ids} | ({str(single)} if single else set())


def case_section(stream: StreamView) -> str:
    """One case's part of the report."""
    aggregate = stream.events[0]["topic"].rsplit(".", 2)[0] if stream.events else ""
    kind = CASE_KINDS.get(aggregate, ("案件", "case"))
    return (
        f"<h2>案件 Case {_e(stream.state.get('number'))} ({_e(kind[0])} {_e(kind[1])})</h2>\n"
        f"<p>状态 Status: {_e(stream.state.get('status'))}</p>\n" + _timeline(stream.events)
    )


def _timeline(events: Sequence[dict[str, Any]]) -> str:
    rows = [
        "<table border=1 cellpadding=4>\n<tr><th>位置 Position</th><th>版本 Version</th>"
        "<th>事件 Event</th><th>业务时间 Business time</th><th>记录时间 Recorded</th>"
        "<th>操作人 Actor</th><th>来源 Source</th><th>内容 Details</th></tr>\n"
    ]
    for v in events:
        rows.append(
            f"<tr><td>{v['position']}</td><td>{v['version']}</td>"
            f"<td>{_pair(EVENT_NAMES, v['topic'])}</td><td>{_e(beijing(v['occurred_at']))}</td>"
            f"<td>{_e(beijing(v['recorded_at']))}</td><td>{_e(person(v['actor']))}</td>"
            f"<td>{_e(v['source'])}</td><td>{_details(v)}</td></tr>\n"
        )
    rows.append("</table>\n")
    return "".join(rows)
