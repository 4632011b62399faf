"""证据: export a bundle for invoices or a status (the API's own export, recorded in the access
log), verify an uploaded bundle with the product's offline verifier and show the result check by
check, and the access log (admins)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from api.http.routes.evidence import bundle_for
from api.web.forms import NOT_FOUND, PostedDep, ServicesDep, ViewerDep
from api.web.render import page, redirect_with
from api.web.session import Viewer
from application.access import ADMINS, HISTORY_READERS
from application.service_errors import ApplicationError
from domain.errors import DomainError
from domain.invoices.status import InvoiceStatus
from infrastructure.bootstrap import event_catalog
from infrastructure.evidence.bundle_verifier import (
    ASKED_FOR,
    CHECKS,
    BundleVerifyReport,
    read_key_file,
    verify_bundle,
)

router = APIRouter()
LOG_LIMIT = 200
MAX_BUNDLE = 2 * 1024**3


def checks(report: BundleVerifyReport) -> list[dict[str, Any]]:
    """Each of the verifier's checks in its order, with its verdict (passed, failed, or not
    run because an earlier one stopped it) and the failures it found."""
    return [
        {
            "name": name,
            "failures": report.checks.get(name, []),
            "state": (
                "skip" if name not in report.checks else ("fail" if report.checks[name] else "pass")
            ),
        }
        for name in CHECKS
        if name in report.checks or name not in ASKED_FOR  # anchors: listed when asked for
    ]


def _past_exports(services: Any, tenant: str) -> list[dict[str, Any]]:
    """Exports from the access log, naming the invoices by the keys people know."""
    rows = [
        r for r in services.access_log.list(tenant, LOG_LIMIT) if r["action"] == "evidence-export"
    ]
    ids = {}
    for r in rows:
        for part in r["subject"].rstrip(".").split(","):
            try:
                ids[part] = UUID(part)
            except ValueError:
                continue
    keys = services.reader.keys_for(tenant, list(ids.values()))
    for r in rows:
        names = [keys.get(ids[p], p) if p in ids else p for p in r["subject"].split(",")]
        r["invoice_keys"] = names[:20]
    return rows


def _page(request: Request, services: Any, v: Viewer, **verified: Any) -> HTMLResponse:
    return page(
        request,
        services,
        v,
        "evidence.html",
        statuses=[s.value for s in InvoiceStatus],
        past=_past_exports(services, v.principal.tenant_id),
        **({"report": None} | verified),
    )


@router.get("/evidence", response_class=HTMLResponse)
def evidence_page(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    v.principal.require(HISTORY_READERS)
    return _page(request, services, v)


@router.post("/evidence/export")
def export(
    services: ServicesDep,
    v: PostedDep,
    invoices: Annotated[str, Form(max_length=400_000)] = "",
    status: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    refs = invoices.replace(",", " ").split()
    back = "/console/evidence"
    try:
        chosen = InvoiceStatus(status) if status else None
        folder, report = bundle_for(services, v.principal, refs, chosen)
    except NOT_FOUND:
        raise
    except (DomainError, ApplicationError) as e:
        title, lines = v.t.error(e)
        return redirect_with(services, back, "error", title, lines)
    except (ValueError, LookupError) as e:  # not a status; nothing sealed yet
        return redirect_with(services, back, "error", v.t("ui.error"), [str(e)])
    return FileResponse(
        report.path,
        media_type="application/zip",
        filename=f"fapiao-evidence-{report.bundle_id}.zip",
        background=BackgroundTask(shutil.rmtree, folder, True),
    )


@router.post("/evidence/verify", response_class=HTMLResponse)
def verify(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    vkey: Annotated[str, Form(max_length=4000)] = "",
) -> HTMLResponse:
    v.principal.require(HISTORY_READERS)
    upload = request.state.form.get("file")
    report = None
    name = ""
    if isinstance(upload, UploadFile) and upload.filename:
        name = upload.filename
        folder = Path(tempfile.mkdtemp(prefix="fapiao-console-verify-"))
        try:
            path = folder / (Path(name).name or "bundle.zip")
            with path.open("wb") as out:
                shutil.copyfileobj(upload.file, out, 1 << 20)
            if os.path.getsize(path) > MAX_BUNDLE:
                raise ValueError("larger than 2 GiB")
            keys = read_key_file(vkey) if vkey.strip() else None
            report = verify_bundle(path, event_catalog(), keys)
        except ValueError as e:  # too large, or no key in what was pasted
            failure = f"{name}: {e}"
            report = BundleVerifyReport(failures=[failure], checks={"readable": [failure]})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    bundled_key = report is not None and not report.trusted
    return _page(
        request,
        services,
        v,
        report=report,
        checks=checks(report) if report else [],
        bundle_name=name,
        bundled_key=bundled_key,
    )


@router.get("/access-log", response_class=HTMLResponse)
def access_log(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    v.principal.require(ADMINS)
    rows = services.access_log.list(v.principal.tenant_id, LOG_LIMIT)
    return page(request, services, v, "access_log.html", rows=rows)
