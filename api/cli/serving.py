"""The HTTP server `fapiao serve` runs, with its settings in one place (benchmarks/read_bench.py
serves its ceiling app through the same function, so both are measured alike).

One process (`--workers 1`, the default) serves the app object built by the caller. Several
(`--workers N`) are spawned by the server's supervisor, each building the app from the
environment (`served_app`); the projection workers, timers, webhook deliverer and anchoring
then run in the supervising process only, so N workers add no runners (leadership stays as
with one process: one leader per projection, whichever process holds the lock).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from fastapi import FastAPI

    from infrastructure.settings import Settings

Server = Literal["uvicorn", "granian"]
APP_FACTORY = "api.cli.serving:served_app"


class ServerUnavailableError(RuntimeError):
    """`--server granian` without the granian package installed."""


def served_app() -> FastAPI:
    """The app of one of several server workers: settings and logging from the environment
    (`fapiao serve` exports its options there before it starts them), no background runners."""
    from api.http.app import create_app
    from infrastructure.settings import Settings
    from infrastructure.structured_logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings, run_workers=False)


def run_server(
    app: str | Any,
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    server: Server = "uvicorn",
    factory: bool = True,
) -> None:
    """Serve `app` (an ASGI app, or "module:callable" of a factory, required for workers > 1)
    until interrupted. The same limits whichever server: connections served at once, keep-alive,
    the graceful shutdown; no access log (the app writes one line per request)."""
    if workers > 1 and not isinstance(app, str):
        raise ValueError("several workers need the app as 'module:factory'")
    if server == "granian":
        _granian(app, settings, host=host, port=port, workers=workers, factory=factory)
        return
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        factory=factory and isinstance(app, str),
        log_level=settings.log_level.lower(),
        log_config=None,  # ours (structured_logs), installed by the caller
        access_log=False,  # one line per request comes from the app, with its context
        # SIGTERM: requests still running (a slow client included) are cut off after this
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
    )


def _granian(
    app: str | Any, settings: Settings, *, host: str, port: int, workers: int, factory: bool
) -> None:
    try:
        from granian.constants import Interfaces
        from granian.server import Server as Granian
    except ImportError:
        raise ServerUnavailableError(
            "--server granian needs the granian package: pip install granian"
        ) from None
    if not isinstance(app, str):
        raise ValueError("granian serves an app named as 'module:factory'")
    Granian(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=factory,
        log_enabled=False,  # ours (structured_logs)
        log_access=False,
        backpressure=max(1, settings.max_connections // workers),
        http1_settings=None,
        workers_kill_timeout=settings.shutdown_grace_seconds,
    ).serve()


def export_for_workers(settings: Settings, log_format: str) -> None:
    """What the spawned workers read from the environment: the serve command's choices."""
    os.environ["FAPIAO_LOG_FORMAT"] = log_format
    os.environ["FAPIAO_LOG_LEVEL"] = settings.log_level
    os.environ["FAPIAO_POOL_KEEP"] = "1" if settings.pool_keep else "0"
