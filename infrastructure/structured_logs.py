"""Structured logs: one JSON line per log event (or a readable console line on a terminal).

Every logger of the process (ours, uvicorn's, the library's) goes through one stdlib handler
whose formatter is structlog's, so existing `logging` calls keep working and gain a time,
level, logger name, the request's context (request id, tenant, key id) and any `extra=` fields.
Values that look like API keys or that sit under a secret's name are masked before rendering:
a log line never carries a key, a secret or a password.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog

LogFormat = Literal["auto", "json", "console"]
SECRET_FIELDS = frozenset(
    {"authorization", "api_key", "secret", "password", "signing_key", "token", "key_secret"}
)
_API_KEY = re.compile(r"fpl_[A-Za-z0-9]+_[A-Za-z0-9_\-]+")
_WEBHOOK_SECRET = re.compile(r"fwh_[A-Za-z0-9_\-]+")
_handler: logging.Handler | None = None


def _mask(value: Any) -> Any:
    """`value` with every API key and webhook secret in its texts masked, nested ones too
    (a secret's field name at any depth is redacted whole)."""
    if isinstance(value, str):
        if "fpl_" in value:
            value = _API_KEY.sub("fpl_[redacted]", value)
        if "fwh_" in value:
            value = _WEBHOOK_SECRET.sub("fwh_[redacted]", value)
        return value
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in SECRET_FIELDS else _mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no API key or named secret reaches the output. One pass over the
    line's fields (its values replaced in place, none added or removed); a plain text without
    a key's or secret's prefix is left as it is, without a call (every request logs a line)."""
    for field, value in event.items():
        if field.lower() in SECRET_FIELDS:
            event[field] = "[redacted]"
        elif isinstance(value, str):
            if "fpl_" in value or "fwh_" in value:
                event[field] = _mask(value)
        elif isinstance(value, dict | list | tuple):
            event[field] = _mask(value)
    return event


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    if fmt != "auto":
        return fmt
    return "console" if stream.isatty() else "json"


def _json_line(event: Any, **_: Any) -> str:
    """One log line as JSON, by orjson (UTF-8 as is, unknown types by str); the stdlib for
    what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event, ensure_ascii=False, default=str)


def configure_logging(
    fmt: LogFormat = "auto", level: str = "INFO", stream: TextIO | None = None
) -> Literal["json", "console"]:
    """Install the one handler on the root logger (idempotent); returns the format chosen."""
    global _handler
    # No line carries where it was logged from, nor the thread or process: the logging
    # HOWTO's "Optimization" settings, which spare every record a walk up the stack (through
    # structlog's findCaller) and the thread and process lookups (benchmarks/read_bench.py
    # logs a line per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    out = stream or sys.stderr
    chosen = resolve_format(fmt, out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if chosen == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
        final = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        final = [renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            *final,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None and _handler in root.handlers:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # One line per request comes from our middleware (with route, tenant and request id).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return chosen


def bind_request(**fields: Any) -> None:
    """Fields every log line of the current request (or job) carries."""
    structlog.contextvars.bind_contextvars(**fields)


def clear_request() -> None:
    structlog.contextvars.clear_contextvars()
