"""Evidence bundles for tax inspections: a BagIt zip a third party can verify offline."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from api.http.deps import PrincipalDep, ServicesDep
from application.access import HISTORY_READERS, Principal
from application.ports import InvoiceFilter
from domain.errors import InvalidFieldError
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import Services
from infrastructure.evidence.bundle import bundle_name, export_bundle

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
    invoices: list[str] = Field(default_factory=list, description="Ids or canonical keys")
    status: InvoiceStatus | None = Field(
        default=None, description="Or: every invoice in this status (up to 10,000)"
    )


@router.post(
    "/evidence-bundles",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
    summary="A BagIt zip proving these invoices' histories (compliance, auditors)",
)
def create_bundle(body: BundleIn, principal: PrincipalDep, services: ServicesDep) -> FileResponse:
    folder, out = bundle_for(services, principal, body.invoices, body.status)
    return FileResponse(
        out,
        media_type="application/zip",
        filename=out.name,
        background=BackgroundTask(_cleanup, folder),
    )


def bundle_for(
    services: Services, principal: Principal, refs: list[str], status: InvoiceStatus | None
) -> tuple[Path, Path]:
    """Export the bundle for these invoices (or every one in `status`) into a new temporary
    folder, and record the export; returns the folder and the zip (the API and the console)."""
    principal.require(EXPORTERS)
    tenant = principal.tenant_id
    ids = [services.ledger.resolve_invoice_id(tenant, ref) for ref in refs]
    if status is not None:
        rows, total = services.reader.list(
            tenant, InvoiceFilter(status=status.value), MAX_INVOICES, None
        )
        ids += [r["invoice_id"] for r in rows]
    if not ids:
        raise InvalidFieldError("invoices", "name invoices or a status", "required")
    if len(ids) > MAX_INVOICES:
        raise InvalidFieldError("invoices", f"at most {MAX_INVOICES} per bundle", "range")
    name = bundle_name(tenant, str(ids[0]) if len(ids) == 1 else f"{len(ids)}-invoices")
    tmp = Path(tempfile.mkdtemp(prefix="fapiao-export-"))
    out = tmp / f"{name}.zip"
    try:
        export_bundle(services, tenant, ids, out)
    except BaseException:
        _cleanup(tmp)
        raise
    services.access_log.record(
        principal,
        "evidence-export",
        ",".join(str(i) for i in ids[:20]) + ("..." if len(ids) > 20 else ""),
        services.ledger.clock.now(),
    )
    return tmp, out


def _cleanup(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
