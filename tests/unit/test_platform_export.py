"""Reading export cells: the quick paths for the usual shapes give what the general path gives,
value or refusal, and a finding's canonical line is the JSON the digest was defined on."""

from __future__ import annotations

import json
from uuid import UUID

import pytest

from application.monitoring.reconciliation_service import finding_line
from application.ports import Finding
from domain.monitoring.platform_export import (
    DEFAULT_COLUMNS,
    RowError,
    _any_key,
    _any_money,
    _key,
    _money,
    _parse_any_date,
    _parse_date,
    column_index,
    read_row,
    row_reader,
)
from infrastructure.monitoring.platform_export_reader import BASIC_COLUMNS


def outcome(read: object, *args: object) -> object:
    try:
        return read(*args)  # type: ignore[operator]
    except RowError as e:
        return (e.field, e.rule, e.message)


MONEY = [
    "1000.00",
    "-0.00",
    "60.00",
    "1,000.00",
    "-1,234,567.89",
    "9999999999999999.99",
    "99999999999999999.00",  # 17 digits: beyond numeric(18,2)
    "1,0000.00",
    "1000.0",
    "1000.001",
    " 1000.00 ",
    "１０００.００",
    "١٠٠٠.٠٠",  # Arabic-Indic digits
    "¥1,000.00",
    "",
    "--",
    "1e3",
]


@pytest.mark.parametrize("text", MONEY)
def test_amounts_read_quickly_read_as_the_general_path_reads_them(text: str) -> None:
    quick, general = outcome(_money, "amount", text), outcome(_any_money, "amount", text)
    assert quick == general
    if not isinstance(general, tuple):
        assert str(quick) == str(general)  # the same exponent too


DAYS = [
    "2026-11-18 10:21:07",
    "2026-11-18",
    "2026-02-29 10:00:00",  # not a leap year
    "2026-11-18 24:00:00",
    "2026-11-18 23:59:60",
    "2026-00-10",
    "0000-01-01",
    "2026-1-5",
    "2026/11/18",
    "2026年11月18日",
    "20261118",
    "18/11/2026",
    "２０２６-11-18",
]


@pytest.mark.parametrize("text", DAYS)
def test_dates_read_quickly_read_as_the_general_path_reads_them(text: str) -> None:
    assert outcome(_parse_date, text) == outcome(_parse_any_date, text)


KEYS = [
    {"digital_number": "26112000000000000001", "number": "", "code": ""},
    {"digital_number": "26112000000000000001", "number": None, "code": None},
    {"digital_number": "26112000000000000001", "number": "１２", "code": ""},
    {"digital_number": "26112000000000000001", "number": 12345678, "code": ""},
    {"digital_number": "2611200000000000001", "number": "", "code": ""},
    {"digital_number": " 26112000000000000001", "number": "", "code": ""},
    {"digital_number": "", "number": "00012345", "code": "011002600104"},
]


@pytest.mark.parametrize("cells", KEYS)
def test_keys_read_quickly_read_as_the_general_path_reads_them(cells: dict[str, object]) -> None:
    assert outcome(_key, cells) == outcome(_any_key, cells)


FINDINGS = [
    Finding("matched", 2, "26112000000000000001", UUID(int=7)),
    Finding("invalid", 9, None, note='total: "1130,00" 有 \\ 和\t制表符\x01 [amount_format]'),
    Finding("absent", None, "011002600104:00012345", UUID(int=8), (), "MarkedMissing", 41, ""),
    Finding(
        "mismatched",
        3,
        "26112000000000000002",
        UUID(int=9),
        ({"field": "tax", "ledger": "130.00", "platform": "130.10"},),
        "Acknowledged",
        12,
    ),
]


@pytest.mark.parametrize("finding", FINDINGS)
def test_a_findings_line_is_its_sorted_compact_json(finding: Finding) -> None:
    body = finding._asdict()
    body["invoice_id"] = str(finding.invoice_id) if finding.invoice_id else None
    body["differences"] = list(finding.differences)
    expected = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert finding_line(finding) == expected.encode() + b"\n"


BASE_ROW = [
    "1",
    "",
    "",
    "26112000000000000001",
    "91110108769914581E",
    "北京云帆科技有限公司",
    "91330100716105852f",
    "杭州青禾贸易有限公司",
    "2026-11-18 10:21:07",
    "1,000.00",
    "60.00",
    "1,060.00",
    "电子发票服务平台",
    "数电票（普通发票）",
    "正常",
    "是",
    "正常",
    "开票员",
    "",
]
CELLS: dict[int, list[object]] = {
    1: ["", None, "011002600104", "０１１", 11002600104],  # 发票代码
    2: ["", None, "00012345", " ", 12345.0],  # 发票号码
    3: [*(k["digital_number"] for k in KEYS), None, 26112000000000000001, ""],  # 数电发票号码
    4: ["", "--", " 91110108769914581e ", None, 91110108769914581, "—"],  # 销方识别号
    6: ["", "-", "91330100716105852F", None, 1.5],  # 购方识别号
    8: [*DAYS, None, 46000, "2026-11-18 ", " 2026-11-18", "1999-12-31", "2101-01-01"],  # 开票日期
    9: [*MONEY, None, 1000.0, 1000],  # 金额
    10: MONEY,  # 税额
    11: MONEY,  # 价税合计
    14: ["正常", "", "--", "作废", "3", " 正常 ", "其他", None, 0, "红冲", "部分红冲"],  # 发票状态
}


def variants() -> list[list[object]]:
    rows: list[list[object]] = [BASE_ROW, BASE_ROW[:12], BASE_ROW[:15], [*BASE_ROW, "extra"]]
    for column, cells in CELLS.items():
        for cell in cells:
            row: list[object] = list(BASE_ROW)
            row[column] = cell
            rows.append(row)
    return rows


HEADERS = [
    BASIC_COLUMNS,
    [*BASIC_COLUMNS[:3], "x", *BASIC_COLUMNS[4:]],  # no 数电发票号码
    [c if c not in ("销方识别号", "发票状态", "发票代码") else "x" for c in BASIC_COLUMNS],
]


@pytest.mark.parametrize("header", HEADERS)
def test_a_row_reader_reads_every_row_as_read_row_does(header: list[str]) -> None:
    """The reader made for one header gives `read_row`'s value or its refusal, row by row,
    whatever shape each cell has (a day it read before included)."""
    index = column_index(list(header), DEFAULT_COLUMNS)
    read = row_reader(index)
    for line, values in enumerate(variants() * 2, start=3):
        quick, general = outcome(read, line, values), outcome(read_row, line, values, index)
        assert (quick, repr(quick)) == (general, repr(general)), values  # exponents too
