"""HMAC-SHA256 signatures for platform callbacks (inbound) and webhooks (outbound).

The signed message is `<unix seconds>.<raw body>`; the header carries `sha256=<hex>`. A
callback is accepted only within five minutes of its timestamp and only once.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from application.monitoring.secret_rotation import new_secret
from infrastructure.store.tables import callback_secrets, callback_signatures

REPLAY_WINDOW = timedelta(minutes=5)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class CallbackRejectedError(Exception):
    """Why a callback was not accepted; it changed nothing."""


class CallbackVerifier:
    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self.engine = engine
        self.write_engine = write_engine

    def rotate_secret(self, tenant_id: str) -> str:
        """A new secret for the tenant's provider; the old one stops working at once."""
        secret = new_secret()
        self.store_secret(tenant_id, secret)
        return secret

    def store_secret(self, tenant_id: str, secret: str) -> None:
        """Keep `secret` as the tenant's one secret: an upsert, so concurrent rotations take
        turns on the row (the last one stays) instead of colliding on the primary key."""
        with self.write_engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(callback_secrets).values(
                tenant_id=tenant_id, secret=secret, created_at=datetime.now(UTC)
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[callback_secrets.c.tenant_id],
                    set_={"secret": stmt.excluded.secret, "created_at": stmt.excluded.created_at},
                )
            )

    def verify(
        self, tenant_id: str, timestamp: str, signature: str, body: bytes, now: datetime
    ) -> None:
        """Raises CallbackRejectedError unless the callback is signed, fresh and new."""
        with self.engine.connect() as conn:
            secret = conn.execute(
                select(callback_secrets.c.secret).where(callback_secrets.c.tenant_id == tenant_id)
            ).scalar()
        if secret is None:
            raise CallbackRejectedError("no callback secret for this tenant")
        try:
            sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise CallbackRejectedError("timestamp must be unix seconds") from None
        if abs(now - sent_at) > REPLAY_WINDOW:
            raise CallbackRejectedError("timestamp outside the 5-minute window")
        if not hmac.compare_digest(sign(secret, timestamp, body), signature):
            raise CallbackRejectedError("signature does not match")
        try:
            with self.write_engine.begin() as conn:
                conn.execute(
                    delete(callback_signatures).where(
                        callback_signatures.c.received_at < now - 2 * REPLAY_WINDOW
                    )
                )
                conn.execute(
                    callback_signatures.insert().values(
                        signature=signature, tenant_id=tenant_id, received_at=now
                    )
                )
        except IntegrityError:
            raise CallbackRejectedError("signature already used") from None
