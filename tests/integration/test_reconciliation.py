"""Reconciliation on both stores: every class, every bad-file case, both encodings and both
file types; importing the same file again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest

from application.invoices.lifecycle import AcknowledgeRequest, MissingReportRequest, SubmitRequest
from application.monitoring.reconciliation_service import ReconciliationFileError, RunResult
from domain.invoices.invoice import Invoice
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import (
    BASIC_COLUMNS,
    PlatformExportReader,
    sha256_of,
    write_export,
)
from tests.builders import BUYER, SELLER, a_draft, by

T = SELLER
DAY = date(2026, 11, 18)
FORMATS = [("csv", "utf-8-sig"), ("csv", "gb18030"), ("xlsx", "")]


def platform_row(
    key: str,
    total: str = "1130.00",
    amount: str = "1000.00",
    tax: str = "130.00",
    status: str = "正常",
    day: str = "2026-11-18 10:21:07",
    buyer: str = BUYER,
) -> list[object]:
    code, _, number = key.rpartition(":")
    digital = key if not code else ""
    return [
        "1",
        code,
        number if code else "",
        digital,
        SELLER,
        "北京云帆科技有限公司",
        buyer,
        "杭州青禾贸易有限公司",
        day,
        amount,
        tax,
        total,
        "电子发票服务平台",
        "数电票（增值税专用发票）",
        status,
        "是",
        "正常",
        "王会计",
        "",
    ]


@dataclass
class Ledger:
    acked: str
    submitted: str
    missing: str
    absent_submitted: str
    absent_acked: str
    different_amount: str
    voided_on_platform: str
    never_uploaded: str
    ids: dict[str, UUID]


def a_ledger(services: Services) -> Ledger:
    ledger = services.ledger
    keys: dict[str, str] = {}
    ids: dict[str, UUID] = {}
    for name in (
        "acked",
        "submitted",
        "missing",
        "absent_submitted",
        "absent_acked",
        "different_amount",
        "voided_on_platform",
        "never_uploaded",
    ):
        draft = a_draft(issued_on=DAY)
        r = ledger.issue_invoice(T, draft, by())
        keys[name], ids[name] = draft.number, r.invoice_id
        if name == "never_uploaded":
            continue
        ledger.change_invoice(T, r.invoice_id, SubmitRequest(channel="erp"), by())
        if name in ("acked", "absent_acked", "different_amount", "voided_on_platform"):
            ledger.change_invoice(
                T, r.invoice_id, AcknowledgeRequest(platform_ref="ACK", learned_via="poll"), by()
            )
        if name == "missing":
            ledger.change_invoice(T, r.invoice_id, MissingReportRequest(detected_by="person"), by())
    return Ledger(**keys, ids=ids)


def export_for(led: Ledger, unknown: str) -> list[list[object]]:
    return [
        platform_row(led.acked),
        platform_row(led.submitted),
        platform_row(led.missing),
        platform_row(led.different_amount, total="1130.10", tax="130.10"),
        platform_row(led.voided_on_platform, status="作废"),
        platform_row(unknown),
        platform_row(led.acked),
    ]


def reconcile(services: Services, path: Path, **kwargs: object) -> RunResult:
    reader = PlatformExportReader(path, kwargs.pop("encoding", None))  # type: ignore[arg-type]
    return services.reconciliation.reconcile(T, reader, sha256_of(path), path.name, by(), **kwargs)  # type: ignore[arg-type]


def findings(services: Services, run: RunResult) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for f in services.reconciliation_store.findings(run.run_id):
        out.setdefault(f.cls, []).append(f.invoice_key)
    return out


@pytest.mark.parametrize("file_type,encoding", FORMATS, ids=["csv-utf8bom", "csv-gb18030", "xlsx"])
def test_every_class_and_the_events_it_causes(
    services: Services, tmp_path: Path, file_type: str, encoding: str
) -> None:
    led = a_ledger(services)
    unknown = "26112000009999999999"
    path = write_export(
        tmp_path / f"export.{file_type}",
        export_for(led, unknown),
        file_type,
        encoding or "utf-8-sig",
    )
    run = reconcile(services, path)
    assert run.counts == {"matched": 3, "mismatched": 2, "unknown": 1, "duplicate": 1, "absent": 2}
    found = findings(services, run)
    assert sorted(found["absent"]) == sorted([led.absent_submitted, led.absent_acked])
    assert found["unknown"] == [unknown] and found["duplicate"] == [led.acked]
    assert sorted(found["mismatched"]) == sorted([led.different_amount, led.voided_on_platform])
    assert run.events_caused == 4 and run.period_from == run.period_to == DAY
    state = {name: services.ledger.get_invoice_state(T, i) for name, i in led.ids.items()}
    assert state["absent_submitted"].status == state["absent_acked"].status == "missing"
    assert state["submitted"].status == state["missing"].status == "acknowledged"
    assert state["never_uploaded"].status == "issued"
    last = list(services.ledger.events.get(led.ids["absent_acked"]))[-1]
    assert isinstance(last, Invoice.MarkedMissing)
    assert (last.detected_by, last.evidence) == (
        "reconciliation",
        f"reconciliation-run:{run.run_id}",
    )
    late = list(services.ledger.events.get(led.ids["missing"]))[-1]
    assert isinstance(late, Invoice.Acknowledged) and late.was_missing
    assert late.learned_via == "reconciliation"
    diffs = {
        f.invoice_key: f.differences
        for f in services.reconciliation_store.findings(run.run_id, "mismatched")
    }
    assert {d["field"] for d in diffs[led.different_amount]} == {"tax", "total"}
    assert diffs[led.voided_on_platform] == (
        {"field": "status", "ledger": "acknowledged", "platform": "voided"},
    )
    caused = [f for f in services.reconciliation_store.findings(run.run_id) if f.event]
    assert len(caused) == 4 and all(f.position for f in caused)


def test_importing_the_same_file_again_changes_nothing(services: Services, tmp_path: Path) -> None:
    led = a_ledger(services)
    path = write_export(tmp_path / "export.csv", export_for(led, "26112000009999999998"))
    first = reconcile(services, path)
    head = services.ledger.recorder.max_notification_id()
    again = reconcile(services, path)
    assert again.replayed and not first.replayed
    assert (again.run_id, again.counts, again.findings_sha256) == (
        first.run_id,
        first.counts,
        first.findings_sha256,
    )
    assert services.ledger.recorder.max_notification_id() == head


def test_a_gb18030_file_is_detected_and_read(services: Services, tmp_path: Path) -> None:
    led = a_ledger(services)
    path = write_export(tmp_path / "gbk.csv", [platform_row(led.acked)], encoding="gb18030")
    reader = PlatformExportReader(path)
    assert reader.encoding == "gb18030"
    run = services.reconciliation.reconcile(T, reader, sha256_of(path), "gbk.csv", by())
    assert run.counts["matched"] == 1


BAD_ROWS = [
    ("2.6112E+19", "scientific notation"),
    ("２６１１２００００００００００００００１", "full-width"),
    ("6112000000000000001", "20 digits"),
]


@pytest.mark.parametrize("file_type,encoding", FORMATS, ids=["csv-utf8bom", "csv-gb18030", "xlsx"])
def test_unreadable_rows_are_reported_with_line_and_reason_never_guessed(
    services: Services, tmp_path: Path, file_type: str, encoding: str
) -> None:
    led = a_ledger(services)
    rows = [platform_row(led.acked)]
    for number, _ in BAD_ROWS:
        row = platform_row(led.submitted)
        row[3] = number
        rows.append(row)
    rows.append(platform_row(led.submitted, total="1,130.00", amount="1,000.00"))  # fine
    rows.append(platform_row(led.missing, total="1130,00"))  # decimal comma: refused
    rows.append(platform_row(led.different_amount, day="18/11/2026"))
    legacy = platform_row("011002600104:00012345")
    legacy[1] = "11002600104"  # the leading zero a spreadsheet dropped
    rows.append(legacy)
    path = write_export(tmp_path / f"bad.{file_type}", rows, file_type, encoding or "utf-8-sig")
    run = reconcile(services, path)
    invalid = list(services.reconciliation_store.findings(run.run_id, "invalid"))
    assert [f.line for f in invalid] == [4, 5, 6, 8, 9, 10]
    notes = [f.note for f in invalid]
    for (_, reason), note in zip(BAD_ROWS, notes, strict=False):
        assert reason in note
    assert "total" in notes[3] and "thousands" in notes[3]
    assert "issued_on" in notes[4] and "code" in notes[5]
    assert run.counts["matched"] == 2  # the good row and the one with thousands separators
    assert services.ledger.get_invoice_state(T, led.ids["missing"]).status == "missing"


def test_keys_stored_as_spreadsheet_numbers_are_refused(services: Services, tmp_path: Path) -> None:
    from openpyxl import Workbook

    led = a_ledger(services)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(BASIC_COLUMNS)
    row = platform_row(led.acked)
    row[3] = 26112000000000000001  # a 20-digit number: a double keeps 15-17 digits
    sheet.append(row)
    path = tmp_path / "numbers.xlsx"
    workbook.save(path)
    run = reconcile(services, path)
    (invalid,) = services.reconciliation_store.findings(run.run_id, "invalid")
    assert "stored as a number" in invalid.note and invalid.line == 2


def test_a_file_missing_required_columns_records_nothing(
    services: Services, tmp_path: Path
) -> None:
    header = [c for c in BASIC_COLUMNS if c not in ("税额", "开票日期")]
    path = write_export(tmp_path / "cols.csv", [["1"] * len(header)], header=header)
    head = services.ledger.recorder.max_notification_id()
    with pytest.raises(ReconciliationFileError, match=r"税额 \(tax\).*|开票日期"):
        reconcile(services, path)
    assert services.ledger.recorder.max_notification_id() == head
    no_header = write_export(tmp_path / "none.csv", [["a", "b"]], header=["x", "y"])
    with pytest.raises(ReconciliationFileError, match="no header row"):
        reconcile(services, no_header)


def test_the_wrong_encoding_is_reported_per_row(services: Services, tmp_path: Path) -> None:
    led = a_ledger(services)
    path = write_export(tmp_path / "mixed.csv", [platform_row(led.acked)], encoding="utf-8")
    pasted = platform_row(led.submitted)
    with path.open("ab") as f:  # a row pasted in from a GB18030 file
        f.write((",".join(str(c) for c in pasted) + "\r\n").encode("gb18030"))
    run = reconcile(services, path, encoding="utf-8")
    (invalid,) = services.reconciliation_store.findings(run.run_id, "invalid")
    assert invalid.line == 4 and "wrong encoding" in invalid.note
    assert run.counts["matched"] == 1


def test_a_whole_file_in_the_wrong_encoding_says_so(services: Services, tmp_path: Path) -> None:
    path = write_export(
        tmp_path / "gbk.csv", [platform_row("26112000009999999997")], encoding="gb18030"
    )
    with pytest.raises(ReconciliationFileError, match="wrong encoding"):
        reconcile(services, path, encoding="utf-8")


def test_a_custom_column_mapping_reads_other_front_ends(services: Services, tmp_path: Path) -> None:
    led = a_ledger(services)
    header = ["全电发票号码", "开票时间", "不含税金额", "税额合计", "价税合计", "发票号码"]
    path = write_export(
        tmp_path / "vendor.csv",
        [[led.acked, "2026-11-18", "1000.00", "130.00", "1130.00", ""]],
        header=header,
    )
    columns = {
        "全电发票号码": "digital_number",
        "开票时间": "issued_on",
        "不含税金额": "amount",
        "税额合计": "tax",
        "价税合计": "total",
        "发票号码": "number",
    }
    run = reconcile(services, path, columns=columns)
    assert run.counts.get("matched") == 1
