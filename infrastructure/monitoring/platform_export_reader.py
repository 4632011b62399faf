"""Reading platform export files, streamed: CSV (UTF-8 with or without BOM, or GB18030) and
XLSX (openpyxl in read-only mode). Memory stays flat whatever the size."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from application.monitoring.reconciliation_service import ReconciliationFileError
from domain.monitoring.platform_export import RowError

SAMPLE = 1 << 20
ENCODINGS = {"utf-8", "utf-8-sig", "gb18030", "gbk", "gb2312"}  # what the platform writes
MAX_ZIP_ENTRIES = 1000
DEFAULT_INFLATED_LIMIT = 128 * 1024 * 1024
DEFAULT_TIME_BUDGET = 600.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def detect_encoding(head: bytes) -> str:
    """A BOM says UTF-8; otherwise UTF-8 if the first megabyte decodes as UTF-8, else GB18030."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


@dataclass
class PlatformExportReader:
    """Yields (line number, cell values) for every row of the file, header included."""

    path: Path
    encoding: str | None = None
    file_type: str = field(init=False)
    size: int = field(init=False)
    consumed: int = 0  # bytes (CSV) or rows (XLSX) read so far, for progress bars
    inflated_limit: int = DEFAULT_INFLATED_LIMIT  # what an XLSX may inflate to, in all
    time_budget: float = DEFAULT_TIME_BUDGET  # seconds to read the whole file
    consumed_line: int = 0

    def __post_init__(self) -> None:
        if self.encoding is not None:
            # LookupError now, not half-way through the file; only the platform's encodings
            if codecs.lookup(self.encoding).name not in ENCODINGS:
                raise LookupError(self.encoding)
        self.size = self.path.stat().st_size
        with self.path.open("rb") as f:
            head = f.read(SAMPLE)
        self.file_type = "xlsx" if head.startswith(b"PK\x03\x04") else "csv"
        if self.file_type == "csv" and self.encoding is None:
            self.encoding = detect_encoding(head)
        if self.file_type == "xlsx":
            self._check_zip()

    def _check_zip(self) -> None:
        """From the zip's directory, before anything is inflated: a readable zip, a bounded
        number of entries and a bounded inflated size (shared strings at most half of it:
        openpyxl holds them in memory). zipfile stops each entry at its declared size."""
        try:
            with zipfile.ZipFile(self.path) as z:
                entries = z.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
            raise ReconciliationFileError("file: not a readable XLSX (a broken zip)") from None
        if len(entries) > MAX_ZIP_ENTRIES:
            raise ReconciliationFileError(f"file: more than {MAX_ZIP_ENTRIES} entries in the XLSX")
        limit_mb = self.inflated_limit // (1024 * 1024)
        if sum(e.file_size for e in entries) > self.inflated_limit:
            raise ReconciliationFileError(f"file: the XLSX inflates to more than {limit_mb} MiB")
        strings = sum(e.file_size for e in entries if e.filename.endswith("sharedStrings.xml"))
        if strings > self.inflated_limit // 2:
            raise ReconciliationFileError(
                f"file: the XLSX's shared strings inflate to more than {limit_mb // 2} MiB"
            )

    def rows(self) -> Iterator[tuple[int, list[object]]]:
        rows = self._xlsx() if self.file_type == "xlsx" else self._csv()
        deadline = time.monotonic() + self.time_budget
        try:
            for item in rows:
                if time.monotonic() > deadline:
                    raise ReconciliationFileError(
                        f"file: reading took longer than {self.time_budget:.0f} s"
                    )
                yield item
        except csv.Error as e:
            raise ReconciliationFileError(f"file: line {self.consumed_line}: {e}") from None
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
            if isinstance(e, ReconciliationFileError):
                raise
            raise ReconciliationFileError(
                f"file: not a readable export ({type(e).__name__})"
            ) from None

    def check_row(self, values: list[object]) -> None:
        check_decoded(values, self.encoding)

    def _csv(self) -> Iterator[tuple[int, list[object]]]:
        assert self.encoding
        with self.path.open("rb") as raw:
            text = io.TextIOWrapper(
                raw, encoding=self.encoding, errors="surrogateescape", newline=""
            )
            reader = csv.reader(text)
            self.consumed_line = 0
            for values in reader:
                line = self.consumed_line = reader.line_num
                if not line & 255:  # tell() costs a system call: often enough for progress
                    self.consumed = raw.tell()
                yield line, values  # a new list each row
            self.consumed = raw.tell()

    def _xlsx(self) -> Iterator[tuple[int, list[object]]]:
        from openpyxl import load_workbook

        workbook = load_workbook(self.path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            self.size = sheet.max_row or 0
            for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                self.consumed = self.consumed_line = line
                yield line, list(values)
        finally:
            workbook.close()


_UNDECODED = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" leaves


def check_decoded(values: list[object], encoding: str | None) -> None:
    """A cell with bytes the encoding could not decode: the file is not in that encoding."""
    try:
        text = "\x00".join(values)  # type: ignore[arg-type]  # CSV cells: all text
    except TypeError:
        text = "\x00".join(v for v in values if isinstance(v, str))
    try:
        text.encode("utf-8")  # the usual case, found at C speed: no lone surrogate at all
    except UnicodeEncodeError:
        if _UNDECODED.search(text):
            raise RowError(
                "row", f"bytes that are not valid {encoding}: wrong encoding?", "encoding"
            ) from None


# The platform's "basic information" export: 19 columns (DOMAIN.md 5).
BASIC_COLUMNS = [
    "序号",
    "发票代码",
    "发票号码",
    "数电发票号码",
    "销方识别号",
    "销方名称",
    "购方识别号",
    "购买方名称",
    "开票日期",
    "金额",
    "税额",
    "价税合计",
    "发票来源",
    "发票票种",
    "发票状态",
    "是否正数发票",
    "发票风险等级",
    "开票人",
    "备注",
]


def write_export(
    path: Path,
    rows: Iterator[list[object]] | list[list[object]],
    file_type: str = "csv",
    encoding: str = "utf-8-sig",
    title: str | None = "全量发票查询导出结果",
    header: list[str] | None = None,
) -> Path:
    """Write rows (cell values in BASIC_COLUMNS order) the way the platform's front-end does:
    a title row, then the header, as CSV (UTF-8 with BOM or GB18030) or XLSX text cells."""
    header = header or BASIC_COLUMNS
    if file_type == "xlsx":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("发票基础信息")
        if title:
            sheet.append([title])
        sheet.append(header)
        for row in rows:
            sheet.append(row)
        workbook.save(path)
        return path
    with path.open("w", encoding=encoding, errors="strict", newline="") as f:
        writer = csv.writer(f)
        if title:
            writer.writerow([title])
        writer.writerow(header)
        writer.writerows(rows)
    return path
