"""Errors raised by the application layer (not business rules: those are domain errors).

Hierarchy::

    ApplicationError
    ├── InvoiceNotFoundError          no such invoice for this tenant (also: another tenant's)
    ├── InvoiceAlreadyExistsError     the same tenant + key was issued before
    ├── IdempotencyKeyReusedError     same Idempotency-Key, different request
    ├── ConcurrencyConflictError      optimistic retries exhausted
    ├── CommandInProgressError        the first request with this Idempotency-Key has not committed
    ├── RunNotFoundError              no such reconciliation run for this tenant
    ├── ProjectionLagError            a read could not catch up with `consistent_after` in time
    └── UnknownProjectionError
"""

from __future__ import annotations

from uuid import UUID


class ApplicationError(Exception):
    """Base of the application layer's errors."""


# The longest ref echoed whole in an answer: any invoice key or uuid fits; a longer one (never
# a key) is cut, so a caller's 10,000 characters are not sent back to them, nor logged.
REF_ECHO_MAX = 64


class InvoiceNotFoundError(ApplicationError):
    def __init__(self, ref: UUID | str) -> None:
        self.ref = ref
        text = str(ref)
        if len(text) > REF_ECHO_MAX:
            text = f"{text[: REF_ECHO_MAX - 16]}... ({len(text):,} characters)"
        super().__init__(f"invoice {text} not found")


class InvoiceAlreadyExistsError(ApplicationError):
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        super().__init__(f"already issued: {', '.join(keys)}")


class IdempotencyKeyReusedError(ApplicationError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was used before with a different request")


class ConcurrencyConflictError(ApplicationError):
    def __init__(self, attempts: int) -> None:
        super().__init__(f"it kept changing underneath; gave up after {attempts} tries")


class CommandInProgressError(ApplicationError):
    """A request with this Idempotency-Key is still running: retry after `retry_after` s."""

    def __init__(self, key: str, retry_after: int = 1) -> None:
        self.key, self.retry_after = key, retry_after
        super().__init__(
            f"a request with Idempotency-Key {key!r} is still in progress; retry shortly"
        )


class SecretShownOnceError(ApplicationError):
    """A repeat of a request with this Idempotency-Key whose answer was a secret: the secret
    is shown once and not kept in the receipt, so the repeat cannot be answered with it."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"the callback secret issued for Idempotency-Key {key!r} was shown once and is not "
            "kept; rotate again with a new Idempotency-Key"
        )


class ProjectionLagError(ApplicationError):
    def __init__(self, projection: str, position: int, reached: int) -> None:
        self.projection, self.position, self.reached = projection, position, reached
        super().__init__(
            f"projection {projection} reached position {reached}, not {position}, in time"
        )


class UnknownProjectionError(ApplicationError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no projection named {name!r} (known: {', '.join(known)})")


class RunNotFoundError(ApplicationError):
    def __init__(self, run_id: object) -> None:
        super().__init__(f"reconciliation run {run_id} not found")
