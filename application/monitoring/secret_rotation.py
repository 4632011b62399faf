"""Rotating a tenant's callback secret under the project's one idempotency mechanism.

The secret is the answer, and it is shown once: the receipt (an event in the append-only,
sealed and exported log) must never hold it. So the receipt keeps only the secret's
fingerprint (the first 16 hex digits of its SHA-256), and a repeat of the same
Idempotency-Key, concurrent or later, is answered 409 `secret-shown-once` naming the key,
never a second secret. The receipt is saved before the secret is stored: of ten concurrent
requests with one key exactly one rotates. Without a key every request rotates (the store
keeps the last; concurrent rotations behave as if one followed the other).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

from application.command_keys import take
from application.invoices.ledger import InvoiceLedger
from application.service_errors import SecretShownOnceError
from domain.base import Provenance


class CallbackSecretStore(Protocol):
    def store_secret(self, tenant_id: str, secret: str) -> None: ...


def new_secret() -> str:
    return "fcs_" + secrets.token_urlsafe(32)


def rotate_callback_secret(
    ledger: InvoiceLedger, store: CallbackSecretStore, tenant_id: str, by: Provenance
) -> str:
    """A new secret for the tenant's provider (the old one stops working at once), once per
    Idempotency-Key of the enclosing request."""
    secret = new_secret()
    idem = take(tenant_id)
    if idem is not None:
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16]
        outcome = ledger.run_once(
            tenant_id,
            by,
            lambda: ([], {"rotated": "callback_secret", "secret_sha256_prefix": fingerprint}),
            idempotency=idem,
        )
        if outcome.replayed:
            raise SecretShownOnceError(idem.key)
    store.store_secret(tenant_id, secret)
    return secret
