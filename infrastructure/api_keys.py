"""Tenants and API keys. A key is shown once; only its SHA-256 is stored (keys are 256-bit
random, so a slow hash adds nothing)."""

from __future__ import annotations

import hashlib
import secrets
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


class ApiKeyStore:
    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self.engine = engine
        self.write_engine = write_engine  # read-then-write transactions (IMMEDIATE on SQLite)

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

    def authenticate(self, secret: str) -> Principal | None:
        if not secret.startswith("fpl_"):
            return None
        return self._principal(api_keys.c.secret_hash == _hash(secret))

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
