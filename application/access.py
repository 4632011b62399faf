"""Who may do what: roles carried by API keys, and the rule that some roles only read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from application.service_errors import ApplicationError


class Role(StrEnum):
    CLERK = "clerk"
    REVIEWER = "reviewer"
    APPROVER = "approver"
    AUDITOR = "auditor"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


# Invoice lifecycle commands: clerks (and ERPs acting as clerks) and admins.
INVOICE_WRITERS = frozenset({Role.CLERK, Role.ADMIN})
REVIEWERS = frozenset({Role.REVIEWER})
APPROVERS = frozenset({Role.APPROVER})
DECIDERS = REVIEWERS | APPROVERS  # may return an application with reasons
# Tenant policy (acknowledgement window, maintenance windows): clerks notice outages too.
POLICY_WRITERS = frozenset({Role.CLERK, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
# History beyond one invoice (the ledger stream, checkpoints, evidence bundles).
HISTORY_READERS = frozenset({Role.AUDITOR, Role.COMPLIANCE, Role.ADMIN})


class ForbiddenError(ApplicationError):
    def __init__(self, roles: frozenset[Role], needed: frozenset[Role]) -> None:
        self.roles, self.needed = roles, needed
        have = ", ".join(sorted(roles)) or "none"
        need = " or ".join(sorted(needed))
        super().__init__(f"this key's roles ({have}) may not do this; it needs {need}")


@dataclass(frozen=True)
class Principal:
    """An authenticated API key: its tenant, roles, and the actor name stamped on events."""

    tenant_id: str
    key_id: str
    roles: frozenset[Role]
    user: str | None = None
    acts_for_users: bool = False  # a key shared by the people of an ERP: it names each person

    @property
    def person(self) -> str:
        """Who, for separation of duties: the named user an ERP acts for, else the key."""
        return f"user:{self.user}" if self.user else f"key:{self.key_id}"

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}" + (f"/user:{self.user}" if self.user else "")

    def may(self, allowed: frozenset[Role]) -> bool:
        """Whether the roles allow it: what the console shows is what `require` would let by."""
        return bool(self.roles & allowed)

    def require(self, allowed: frozenset[Role]) -> None:
        if not self.may(allowed):
            raise ForbiddenError(self.roles, allowed)


def parse_roles(text: str) -> frozenset[Role]:
    roles = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        try:
            roles.add(Role(part))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {part!r} (known: {known})") from None
    if not roles:
        raise ValueError("at least one role is needed")
    return frozenset(roles)
