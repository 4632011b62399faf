"""对账: upload a platform export and watch it being reconciled; the runs; a run's findings by
class, with the download. The upload goes through the same code as the API's
(`reconcile_upload`), in a background job whose progress the page polls."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from api.http.routes.reconciliations import _csv, reconcile_upload
from api.web.forms import PostedDep, ServicesDep, ViewerDep, by
from api.web.jobs import JobBoard
from api.web.render import page, redirect_with
from application.access import INVOICE_WRITERS
from application.service_errors import RunNotFoundError
from domain.monitoring.reconciliation_run import CLASSES, ReconciliationRun

router = APIRouter()
RUNS = 100
SHOWN = 500


def _board(request: Request) -> JobBoard:
    board: JobBoard = request.app.state.console_jobs
    return board


@router.get("/reconciliations", response_class=HTMLResponse)
def runs(request: Request, services: ServicesDep, v: ViewerDep) -> HTMLResponse:
    tenant = v.principal.tenant_id
    services.bring_up_to_date("streams", services.settings.consistent_read_timeout)
    found = []
    for run_id in services.cases.streams_of(tenant, ReconciliationRun.Started.TOPIC, RUNS):
        try:
            run = services.reconciliation.get_run(tenant, run_id)
        except RunNotFoundError:  # started, never completed
            continue
        aggregate: Any = services.ledger.repository.get(run_id)
        found.append((run, aggregate))
    found.sort(key=lambda pair: pair[1].modified_on, reverse=True)
    return page(request, services, v, "reconciliations.html", runs=found)


@router.post("/reconciliations")
def upload(
    request: Request,
    services: ServicesDep,
    v: PostedDep,
    direction: Annotated[str, Form(max_length=20)] = "outbound",
    encoding: Annotated[str, Form(max_length=40)] = "",
    period_from: Annotated[str, Form(max_length=20)] = "",
    period_to: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    v.principal.require(INVOICE_WRITERS)
    file = request.state.form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        return redirect_with(services, "/console/reconciliations", "error", v.t("rule.required"))
    # The request's upload is gone when the request ends: the job reads its own copy.
    fd, copy = tempfile.mkstemp(prefix="fapiao-console-upload-")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(file.file, out, 1 << 20)
    name, tenant, stamp = file.filename, v.principal.tenant_id, by(v, services)

    def task(progress: Any) -> Any:
        try:
            with open(copy, "rb") as stream:
                return reconcile_upload(
                    services,
                    tenant,
                    stamp,
                    stream,
                    name,
                    direction,
                    encoding or None,
                    None,
                    date.fromisoformat(period_from) if period_from else None,
                    date.fromisoformat(period_to) if period_to else None,
                    progress,
                )
        finally:
            os.unlink(copy)

    job = _board(request).start(tenant, name, task)
    return RedirectResponse(f"/console/reconciliations/jobs/{job.job_id}", status_code=303)


@router.get("/reconciliations/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, services: ServicesDep, v: ViewerDep, job_id: str) -> Response:
    job = _board(request).get(v.principal.tenant_id, job_id)
    if job is None:
        raise HTTPException(404, job_id)
    fragment = request.headers.get("HX-Request") == "true"
    if job.finished and job.error is None:
        target = f"/console/reconciliations/{job.result.run_id}"
        if fragment:
            return Response(headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    error = v.t.error(job.error) if job.error is not None else None
    return page(
        request,
        services,
        v,
        "reconciliation_job_fragment.html" if fragment else "reconciliation_job.html",
        job=job,
        error=error,
    )


@router.get("/reconciliations/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    services: ServicesDep,
    v: ViewerDep,
    run_id: UUID,
    cls: str | None = None,
) -> HTMLResponse:
    run = services.reconciliation.get_run(v.principal.tenant_id, run_id)
    wanted = cls if cls in CLASSES else None
    findings = []
    for f in services.reconciliation_store.findings(run_id, wanted):
        findings.append(f)
        if len(findings) >= SHOWN:
            break
    aggregate: Any = services.ledger.repository.get(run_id)
    return page(
        request,
        services,
        v,
        "reconciliation.html",
        run=run,
        file_name=getattr(aggregate, "file_name", ""),
        findings=findings,
        shown=SHOWN,
        classes=CLASSES,
        cls=wanted,
    )


@router.get("/reconciliations/{run_id}/findings.csv")
def findings_csv(
    services: ServicesDep, v: ViewerDep, run_id: UUID, cls: str | None = None
) -> StreamingResponse:
    services.reconciliation.get_run(v.principal.tenant_id, run_id)  # 404 for another tenant's
    wanted = cls if cls in CLASSES else None
    return StreamingResponse(
        _csv(services.reconciliation_store.findings(run_id, wanted)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="findings-{run_id}.csv"'},
    )
