"""Reconciliation of platform exports: upload a file, read its summary and findings."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, BinaryIO, Literal
from uuid import UUID

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api.http.deps import PrincipalDep, ServicesDep, provenance
from api.http.schemas import upload_example
from application.access import INVOICE_WRITERS
from application.monitoring.reconciliation_service import RunResult
from application.ports import Finding
from domain.base import Provenance
from domain.bounds import NAME_LENGTH, TEXT_LENGTH, check_text, control_character
from domain.errors import InvalidFieldError
from domain.monitoring.platform_export import check_period
from infrastructure.bootstrap import Services
from infrastructure.monitoring.platform_export_reader import PlatformExportReader

router = APIRouter(prefix="/v1", tags=["reconciliation"])
MAX_UPLOAD = 2 * 1024**3


class RunOut(BaseModel):
    run_id: UUID
    replayed: bool
    file_sha256: str
    period_from: date | None
    period_to: date | None
    rows: int
    counts: dict[str, int]
    events_caused: int
    findings_sha256: str
    findings_url: str

    @classmethod
    def of(cls, r: RunResult) -> RunOut:
        return cls(
            run_id=r.run_id,
            replayed=r.replayed,
            file_sha256=r.file_sha256,
            period_from=r.period_from,
            period_to=r.period_to,
            rows=r.rows,
            counts=r.counts,
            events_caused=r.events_caused,
            findings_sha256=r.findings_sha256,
            findings_url=f"/v1/reconciliations/{r.run_id}/findings",
        )


class FindingOut(BaseModel):
    cls: str
    line: int | None
    invoice_key: str | None
    invoice_id: UUID | None
    differences: list[dict[str, str]]
    event: str | None
    position: int | None
    note: str

    @classmethod
    def of(cls, f: Finding) -> FindingOut:
        return cls(
            cls=f.cls,
            line=f.line,
            invoice_key=f.invoice_key,
            invoice_id=f.invoice_id,
            differences=list(f.differences),
            event=f.event,
            position=f.position,
            note=f.note,
        )


@router.post(
    "/reconciliations",
    response_model=RunOut,
    status_code=201,
    summary="Reconcile a platform export (CSV or XLSX, UTF-8 or GB18030)",
    openapi_extra=upload_example(
        "全量发票查询导出.xlsx",
        direction="outbound",
        period_from="2026-11-01",
        period_to="2026-11-30",
    ),
)
def reconcile(
    principal: PrincipalDep,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="The platform's export, as downloaded")],
    direction: Annotated[
        Literal["outbound", "inbound"],
        Form(description="outbound: invoices we issued; inbound: invoices we received"),
    ] = "outbound",
    encoding: Annotated[str | None, Form(description="Override detection (utf-8, gb18030)")] = None,
    columns: Annotated[
        str | None, Form(description="JSON {header text: field}, replacing the default mapping")
    ] = None,
    period_from: Annotated[date | None, Form()] = None,
    period_to: Annotated[date | None, Form()] = None,
) -> RunOut:
    principal.require(INVOICE_WRITERS)
    result = reconcile_upload(
        services,
        principal.tenant_id,
        provenance(principal, None, services),
        file.file,
        file.filename,
        direction,
        encoding,
        columns,
        period_from,
        period_to,
    )
    return RunOut.of(result)


def reconcile_upload(
    services: Services,
    tenant_id: str,
    by: Provenance,
    stream: BinaryIO,
    filename: str | None,
    direction: str = "outbound",
    encoding: str | None = None,
    columns: str | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """An uploaded export, kept in a temporary file while it is read and hashed, reconciled
    (the API's route and the console's upload both come here)."""
    mapping = _mapping(columns)
    if (period_from is None) != (period_to is None):
        raise InvalidFieldError("period_to", "give both ends of the period, or neither", "pair")
    if period_from is not None and period_to is not None:
        check_period(period_from, period_to)
    if encoding is not None:
        check_text("encoding", encoding, 32, multiline=False)
    name = _upload_name(filename)
    with tempfile.TemporaryDirectory(prefix="fapiao-upload-") as tmp:
        path = Path(tmp) / name
        digest = hashlib.sha256()
        size = 0
        with path.open("wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise InvalidFieldError("file", "larger than 2 GiB", "size")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidFieldError("file", "is empty", "required")
        if encoding is not None and len(encoding) > 32:
            raise InvalidFieldError("encoding", "is longer than 32 characters", "max_length")
        try:
            reader = PlatformExportReader(
                path,
                encoding,
                inflated_limit=services.settings.upload_inflated_limit_mb * 1024 * 1024,
                time_budget=services.settings.reconciliation_time_budget_seconds,
            )
        except (LookupError, ValueError):
            raise InvalidFieldError(
                "encoding",
                f"{encoding!r} is not one of utf-8, utf-8-sig, gb18030, gbk, gb2312",
                "encoding",
            ) from None
        period = (period_from, period_to) if period_from and period_to else None
        result = services.reconciliation.reconcile(
            tenant_id,
            reader,
            digest.hexdigest(),
            path.name,
            by,
            direction,
            mapping,
            period,
            progress,
        )
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _mapping(columns: str | None) -> dict[str, str] | None:
    """The `columns` form field: a flat JSON object of header text -> field, within bounds
    (deep nesting is refused as bad JSON, never a RecursionError)."""
    if not columns:
        return None
    if len(columns) > TEXT_LENGTH:
        raise InvalidFieldError("columns", f"is longer than {TEXT_LENGTH} characters", "max_length")
    try:
        mapping = json.loads(columns)
    except (ValueError, RecursionError):
        mapping = None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise InvalidFieldError("columns", "must be a JSON object of header: field", "json")
    return mapping


def _upload_name(filename: str | None) -> str:
    """The upload's own name, as kept with the run: a plain name, no path, no control
    characters (a name that is not one is refused, not repaired)."""
    if not filename:
        return "export"
    name = os.path.basename(filename.replace("\\", "/"))
    if control_character(filename, multiline=False) is not None:
        raise InvalidFieldError(
            "file", "the file name must not contain control characters", "file_name"
        )
    if name in ("", ".", "..") or len(name) > NAME_LENGTH:
        raise InvalidFieldError(
            "file",
            f"the file name must be a plain name of at most {NAME_LENGTH} characters",
            "file_name",
        )
    return name


@router.get("/reconciliations/{run_id}", response_model=RunOut, summary="A run's summary")
def get_run(run_id: UUID, principal: PrincipalDep, services: ServicesDep) -> RunOut:
    return RunOut.of(services.reconciliation.get_run(principal.tenant_id, run_id))


@router.get(
    "/reconciliations/{run_id}/findings",
    summary="A run's findings, as JSON or CSV",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def get_findings(
    run_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    cls: Annotated[str | None, Query(alias="class", description="Only this class")] = None,
) -> StreamingResponse:
    get_run(run_id, principal, services)  # 404 for another tenant's run
    findings = services.reconciliation_store.findings(run_id, cls)
    if format == "csv":
        return StreamingResponse(
            _csv(findings),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="findings-{run_id}.csv"'},
        )
    return StreamingResponse(_json(findings), media_type="application/json")


def _json(findings: Iterator[Finding]) -> Iterator[bytes]:
    yield b"["
    for i, f in enumerate(findings):
        yield (b"," if i else b"") + FindingOut.of(f).model_dump_json().encode()
    yield b"]"


def _csv(findings: Iterator[Finding]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # Excel opens UTF-8 with a BOM correctly
    writer.writerow(
        ["class", "line", "invoice_key", "invoice_id", "differences", "event", "position", "note"]
    )
    for f in findings:
        writer.writerow(
            [
                f.cls,
                f.line or "",
                f.invoice_key or "",
                f.invoice_id or "",
                "; ".join(
                    f"{d['field']}: ledger {d['ledger']}, platform {d['platform']}"
                    for d in f.differences
                ),
                f.event or "",
                f.position or "",
                f.note,
            ]
        )
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
