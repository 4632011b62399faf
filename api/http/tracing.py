"""Optional OpenTelemetry tracing (FAPIAO_OTEL_TRACING, off by default): a span per request
(FastAPI instrumentation) with the SQL it ran beneath it (SQLAlchemy instrumentation), exported
over OTLP/HTTP (the standard OTEL_EXPORTER_OTLP_* variables say where) or printed to stdout.
The packages come with the `tracing` extra; asking for tracing without them is a startup error
that says so."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from infrastructure.settings import Settings


class TracingUnavailableError(RuntimeError):
    """FAPIAO_OTEL_TRACING is on but the OpenTelemetry packages are not installed."""


def tracer_provider(settings: Settings) -> Any:
    """A provider with the configured exporter (Any: the SDK is an optional dependency)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise TracingUnavailableError(
            "FAPIAO_OTEL_TRACING needs the tracing extra: pip install 'fapiao-ledger[tracing]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": "fapiao-ledger"}))
    if settings.otel_exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def trace_requests(app: FastAPI, provider: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="healthz,metrics"
    )


def trace_sql(provider: Any, engines: list[Engine]) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation declares SQLAlchemy < 2.1; it hooks engine events that 2.1 keeps, so
    # skip its version check (tests/e2e/test_tracing.py checks the SQL spans appear).
    SQLAlchemyInstrumentor().instrument(
        engines=engines, tracer_provider=provider, skip_dep_check=True
    )


def stop_tracing(provider: Any) -> None:
    provider.shutdown()
