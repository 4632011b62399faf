"""Evidence bundles for tax inspections: a BagIt zip a third party can verify offline.

Exports are recorded in the (sealed) access log; a repeated Idempotency-Key returns the same
bundle, byte for byte, and records nothing; while the ledger does not match its seal the
export is refused (409)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from api.http.deps import IdempotencyKey, PrincipalDep, ServicesDep, idempotency
from application.access import HISTORY_READERS, Principal
from application.dto import Idempotency
from application.ports import InvoiceFilter
from domain.errors import InvalidFieldError
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Services
from infrastructure.evidence.bundle import BundleReport, ExportRequest, export_bundle, unique

router = APIRouter(prefix="/v1", tags=["audit"])
EXPORTERS = HISTORY_READERS
MAX_INVOICES = 10_000


class BundleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"invoices": ["26112000000135114086"]}, {"status": "missing"}]
        },
    )
    invoices: list[str] = Field(
        default_factory=list,
        max_length=MAX_INVOICES,
        description="Ids or canonical keys (the same invoice twice is one)",
    )
    status: InvoiceStatus | None = Field(
        default=None, description="Or: every invoice in this status (up to 10,000)"
    )
    since_checkpoint: str | None = Field(
        default=None,
        max_length=8192,
        description="A checkpoint note you already hold: the bundle proves this log extends it",
    )


@router.post(
    "/evidence-bundles",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
    summary="A BagIt zip proving these invoices' histories (compliance, auditors)",
)
def create_bundle(
    request: Request,
    body: BundleIn,
    principal: PrincipalDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> FileResponse:
    folder, report = bundle_for(
        services,
        principal,
        body.invoices,
        body.status,
        body.since_checkpoint,
        idempotency(request, idempotency_key, body),
    )
    return FileResponse(
        report.path,
        media_type="application/zip",
        filename=f"fapiao-evidence-{report.bundle_id}.zip",
        headers={
            "X-Fapiao-Bundle-Id": report.bundle_id,
            "X-Fapiao-Checkpoint-Size": str(report.tree_size),
            "X-Fapiao-Replayed": "true" if report.replayed else "false",
        },
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


def bundle_for(
    services: Services,
    principal: Principal,
    refs: list[str],
    status: InvoiceStatus | None,
    since_checkpoint: str | None = None,
    idempotency: Idempotency | None = None,
) -> tuple[Path, BundleReport]:
    """Export the bundle for these invoices (or every one in `status`) into a new temporary
    folder; the export records itself in the sealed access log. Returns the folder (the
    caller removes it) and the report (the API and the console)."""
    principal.require(EXPORTERS)
    tenant = principal.tenant_id
    for i, ref in enumerate(refs):
        if not ref or len(ref) > 64:
            raise InvalidFieldError(f"invoices[{i}]", "an id or key of 1-64 characters", "length")
    ids = [services.ledger.resolve_invoice_id(tenant, ref) for ref in refs]
    if status is not None:
        rows, _ = services.reader.list(
            tenant, InvoiceFilter(status=status.value), MAX_INVOICES + 1, None
        )
        ids += [r["invoice_id"] for r in rows]
    ids = unique(ids)
    if not ids:
        raise InvalidFieldError("invoices", "name invoices or a status", "required")
    if len(ids) > MAX_INVOICES:
        raise InvalidFieldError("invoices", f"at most {MAX_INVOICES} per bundle", "range")
    tmp = Path(tempfile.mkdtemp(prefix="fapiao-export-"))
    try:
        report = export_bundle(
            services,
            ExportRequest(
                tenant_id=tenant,
                invoice_ids=ids,
                refs=refs,
                status=status.value if status else None,
                principal=principal,
                since_checkpoint=since_checkpoint,
                idempotency=idempotency,
            ),
            tmp / "bundle.zip",
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, report
