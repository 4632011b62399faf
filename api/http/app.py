"""The FastAPI application, built in a factory; importing this module connects to nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.http import errors, problem_docs, tracing
from api.http.edge import EdgeLimits
from api.http.observability import RequestObserver
from api.http.routes import (
    callbacks,
    checkpoints,
    complaints,
    evidence,
    health,
    history,
    invoices,
    lost_invoices,
    metrics,
    operations,
    policy,
    queues,
    reconciliations,
    reentry,
    webhooks,
)
from api.web import console
from infrastructure.bootstrap import Cells, Services, build_cells
from infrastructure.projections.invoice_status_async import AsyncStatusReader
from infrastructure.settings import Settings

DESCRIPTION = """
fapiao-ledger is the enterprise's trusted record of every invoice's journey to the tax
platform. Every change is an immutable event; reads come from projections.

Authenticate with `Authorization: Bearer <key>` (create one with `fapiao keys create`).
Errors are RFC 9457 `application/problem+json`; validation errors list each field and rule.
Money is a decimal string (`"1130.00"`); times are shown in Beijing time (+08:00).
"""


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    run_workers: bool = False,
    cells: Cells | None = None,
) -> FastAPI:
    """Build the app. With `services` (one database) or `cells` (tenants routed to several),
    the caller owns them; otherwise the lifespan builds and closes them, one per database of
    the settings. `run_workers` runs the projection workers in-process (embedded mode)."""
    given = cells or (Cells([services]) if services is not None else None)
    effective = given.default.settings if given is not None else settings or Settings()
    provider = tracing.tracer_provider(effective) if effective.otel_tracing else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = given or build_cells(effective)
        app.state.cells = served
        app.state.services = served.default
        if provider is not None:
            for cell in served.cells:
                tracing.trace_sql(provider, [cell.engine, cell.write_engine])
        for cell in served.cells:
            cell.fast_reader = AsyncStatusReader.serving(cell.settings, cell.engine)
        if run_workers:
            served.start_workers()
        try:
            yield
        finally:
            for cell in served.cells:
                reader, cell.fast_reader = cell.fast_reader, None
                if reader is not None:
                    await reader.close()
            if given is None:
                served.close()
            if provider is not None:
                tracing.stop_tracing(provider)

    # Swagger UI and ReDoc from files shipped in the package: /docs and /redoc work offline.
    app = FastAPIOffline(
        title="fapiao-ledger",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(EdgeLimits, settings=effective)  # inside the observer: 413s are counted
    app.add_middleware(RequestObserver)
    if provider is not None:
        tracing.trace_requests(app, provider)
    app.include_router(invoices.router)  # first: it holds the hot read (no path overlaps)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(queues.router)
    app.include_router(policy.router)
    app.include_router(reconciliations.router)
    app.include_router(callbacks.router)
    app.include_router(webhooks.router)
    app.include_router(reentry.router)
    app.include_router(complaints.router)
    app.include_router(lost_invoices.router)
    app.include_router(checkpoints.router)
    app.include_router(history.router)
    app.include_router(evidence.router)
    app.include_router(operations.router)
    console.install(app)
    problem_docs.install(app)
    return app
