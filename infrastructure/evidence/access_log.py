"""Who looked: history reads and evidence exports by auditor and compliance keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from application.access import Principal, Role
from infrastructure.store.tables import access_log

WATCHED = frozenset({Role.AUDITOR, Role.COMPLIANCE})


class AccessLog:
    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self.engine, self.write_engine = engine, write_engine

    def record(self, principal: Principal, action: str, subject: str, at: datetime) -> None:
        """Kept for auditor and compliance keys (the people whose reading is itself evidence)."""
        if not principal.roles & WATCHED:
            return
        self._insert(
            principal.tenant_id,
            principal.key_id,
            principal.actor,
            ",".join(sorted(principal.roles)),
            action,
            subject,
            at,
        )

    def record_operator(
        self, tenant_id: str, actor: str, action: str, subject: str, at: datetime
    ) -> None:
        """An operator's read or export through the CLI (no API key): always kept."""
        self._insert(tenant_id, "cli", actor, "operator", action, subject, at)

    def _insert(
        self,
        tenant_id: str,
        key_id: str,
        actor: str,
        roles: str,
        action: str,
        subject: str,
        at: datetime,
    ) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(
                access_log.insert().values(
                    access_id=uuid.uuid4(),
                    tenant_id=tenant_id,
                    key_id=key_id,
                    actor=actor,
                    roles=roles,
                    action=action,
                    subject=subject,
                    at=at,
                )
            )

    def list(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        c = access_log.c
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    select(access_log)
                    .where(c.tenant_id == tenant_id)
                    .order_by(c.at.desc())
                    .limit(limit)
                )
            ]
