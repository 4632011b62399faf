"""Tenants and API keys. A key is shown once; only its SHA-256 is stored (keys are 256-bit
random, so a slow hash adds nothing).

`authenticate` keeps what it read of each key hash for `cache_seconds`
(FAPIAO_KEY_CACHE_SECONDS, default 5 s; 0 reads the table every time), so a read costs its own
query and not a key lookup too. The bound: a key revoked by another process (the CLI, another
server worker) is refused at most `cache_seconds` later; revoked through this store, it is
forgotten at once. Unknown secrets are kept too (a new key's secret cannot have been tried
before it was made), in a bounded map, so guessed keys cannot grow it without limit.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from application.access import Principal, Role, parse_roles
from domain.invoices.identity import parse_uscc
from infrastructure.store.tables import api_keys, tenants


class ApiKeyError(Exception):
    """A key or tenant operation that cannot be done as asked (unknown tenant, key, ...)."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant_id: str
    roles: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


CACHE_ENTRIES = 10_000  # key hashes remembered at most; the oldest go first


class ApiKeyStore:
    def __init__(
        self,
        engine: Engine,
        write_engine: Engine,
        cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.write_engine = write_engine  # read-then-write transactions (IMMEDIATE on SQLite)
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        # secret hash -> (monotonic deadline, the principal or None for unknown/revoked)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_lock = threading.Lock()

    def ensure_tenant(self, taxpayer_code: str, name: str) -> str:
        """Create the tenant if new; its id is its validated unified social credit code."""
        code, _ = parse_uscc("tenant", taxpayer_code)
        with self.write_engine.begin() as conn:
            exists = conn.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == code))
            if exists.first() is None:
                conn.execute(
                    tenants.insert().values(
                        tenant_id=code, name=name or code, created_at=datetime.now(UTC)
                    )
                )
        return code

    def require_tenant(self, taxpayer_code: str) -> str:
        """The tenant's id if it exists; else ApiKeyError naming how to create it."""
        code, _ = parse_uscc("tenant", taxpayer_code)
        with self.engine.connect() as conn:
            found = conn.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == code))
            if found.first() is None:
                raise ApiKeyError(
                    f"no tenant {code} in this ledger "
                    f"(create it with `fapiao keys create --tenant {code} --roles ...`)"
                )
        return code

    def list_tenants(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [
                (r.tenant_id, r.name)
                for r in conn.execute(select(tenants).order_by(tenants.c.tenant_id))
            ]

    def create_key(
        self,
        tenant_id: str,
        roles: str | frozenset[Role],
        label: str = "",
        acts_for_users: bool = False,
    ) -> tuple[str, str]:
        """A new key for the tenant; returns (key_id, secret). The secret is not kept. An ERP
        key (`acts_for_users`) may name the person it acts for on each request."""
        role_set = parse_roles(roles) if isinstance(roles, str) else roles
        with self.write_engine.begin() as conn:
            if (
                conn.execute(
                    select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id)
                ).first()
                is None
            ):
                raise ApiKeyError(f"no tenant {tenant_id}; create it first")
            key_id = secrets.token_hex(6)
            secret = f"fpl_{key_id}_{secrets.token_urlsafe(32)}"
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    tenant_id=tenant_id,
                    secret_hash=_hash(secret),
                    roles=",".join(sorted(r.value for r in role_set)),
                    label=label,
                    created_at=datetime.now(UTC),
                    revoked_at=None,
                    acts_for_users=acts_for_users,
                )
            )
        return key_id, secret

    def list_keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        query = select(api_keys).order_by(api_keys.c.tenant_id, api_keys.c.created_at)
        if tenant_id:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return [
                KeyInfo(r.key_id, r.tenant_id, r.roles, r.label, r.created_at, r.revoked_at)
                for r in conn.execute(query)
            ]

    def revoke(self, key_id: str, tenant_id: str | None = None) -> None:
        """Revoke a key; with `tenant_id`, only one of that tenant's (the console's admin)."""
        where = [api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)]
        if tenant_id is not None:
            where.append(api_keys.c.tenant_id == tenant_id)
        with self.write_engine.begin() as conn:
            result = conn.execute(
                update(api_keys).where(*where).values(revoked_at=datetime.now(UTC))
            )
            if result.rowcount == 0:
                raise ApiKeyError(f"no active key {key_id}")
        self.forget(key_id)

    def forget(self, key_id: str) -> None:
        """Drop what the cache holds of `key_id` (revoked here: refused from now on)."""
        with self._cache_lock:
            for digest in [
                d for d, (_, p) in self._cache.items() if p is not None and p.key_id == key_id
            ]:
                del self._cache[digest]

    def authenticate(self, secret: str) -> Principal | None:
        """The key's principal while it is active, else None (see the module's note on the
        cache: at most `cache_seconds` old)."""
        if not secret.startswith("fpl_"):
            return None
        digest = _hash(secret)
        if self.cache_seconds <= 0:
            return self._principal(api_keys.c.secret_hash == digest)
        now = self.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = self._principal(api_keys.c.secret_hash == digest)
        with self._cache_lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache = {d: e for d, e in self._cache.items() if e[0] > now}
                while len(self._cache) >= CACHE_ENTRIES:
                    del self._cache[next(iter(self._cache))]
            self._cache[digest] = (now + self.cache_seconds, principal)
        return principal

    def authenticate_cached(self, secret: str) -> tuple[bool, Principal | None]:
        """(True, the principal or None) when the cache answers for `secret` now, without IO;
        (False, None) when `authenticate` would read the table."""
        if not secret.startswith("fpl_"):
            return True, None
        if self.cache_seconds <= 0:
            return False, None
        cached = self._cache.get(_hash(secret))
        if cached is not None and cached[0] > self.monotonic():
            return True, cached[1]
        return False, None

    def principal_for(self, key_id: str) -> Principal | None:
        """The key's principal while it is active (a console session names its key by id)."""
        return self._principal(api_keys.c.key_id == key_id)

    def _principal(self, where: Any) -> Principal | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(where)).first()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(
            row.tenant_id, row.key_id, parse_roles(row.roles), acts_for_users=row.acts_for_users
        )

    def tenant_name(self, tenant_id: str) -> str:
        with self.engine.connect() as conn:
            name = conn.execute(
                select(tenants.c.name).where(tenants.c.tenant_id == tenant_id)
            ).scalar()
        return str(name or tenant_id)
