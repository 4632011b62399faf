"""The Idempotency-Key of the command a request is running, for every service it calls.

An HTTP route (or a CLI command) opens `command_key(tenant, idempotency)` around the one
command it runs; `InvoiceLedger.run_once` takes the key from there, so every command that saves
through it (invoices, cases and their steps, policy) records its receipt in the same save as its
events, with no service having to pass it along. The key is used by the first `run_once` only:
a command that saves more than once (a reconciliation) does not repeat it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from application.dto import Idempotency


@dataclass
class _Scope:
    tenant_id: str
    idempotency: Idempotency
    used: bool = field(default=False)


_current: ContextVar[_Scope | None] = ContextVar("fapiao_command_key", default=None)


@contextmanager
def command_key(tenant_id: str, idempotency: Idempotency | None) -> Iterator[None]:
    """Run the enclosed command under `idempotency` (nothing changes when it is None)."""
    if idempotency is None:
        yield
        return
    token = _current.set(_Scope(tenant_id, idempotency))
    try:
        yield
    finally:
        _current.reset(token)


def take(tenant_id: str) -> Idempotency | None:
    """The enclosing request's key for a command of `tenant_id`, once (None afterwards)."""
    scope = _current.get()
    if scope is None or scope.used or scope.tenant_id != tenant_id:
        return None
    scope.used = True
    return scope.idempotency


def enter_command_key(tenant_id: str, idempotency: Idempotency | None) -> None:
    """Set (or clear, with None) the key for the rest of the current context: for a request
    whose context is its own (an HTTP dependency sets it once per request)."""
    _current.set(None if idempotency is None else _Scope(tenant_id, idempotency))
