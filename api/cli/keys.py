"""`fapiao keys ...`: API keys: create, list, revoke."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from api.cli.root import console, services_for, tenant_code

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant's unified social credit code")],
    roles: Annotated[
        str,
        typer.Option(help="Comma-separated: clerk, reviewer, approver, auditor, compliance, admin"),
    ],
    tenant_name: Annotated[str, typer.Option(help="Name, when the tenant is new")] = "",
    label: Annotated[str, typer.Option(help="What the key is for")] = "",
    acts_for_users: Annotated[
        bool,
        typer.Option(
            "--acts-for-users",
            help="An ERP's shared key: each request names its person in X-Actor-User (and "
            "the console asks for a name at sign-in); without it the key is the person",
        ),
    ] = False,
) -> None:
    """Create an API key (the tenant too, if new). The key is printed once."""
    with services_for(tenant=tenant) as services:
        tenant_id = services.keys.ensure_tenant(tenant, tenant_name)
        key_id, secret = services.keys.create_key(tenant_id, roles, label, acts_for_users)
    print(f"key {key_id} for {tenant_id}: {secret}", flush=True)
    console.print("store it now: only its hash is kept")


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """List API keys (never their secrets)."""
    with services_for(tenant=tenant) as services:
        rows = services.keys.list_keys(tenant_code(services, tenant) if tenant else None)
    table = Table("key", "tenant", "roles", "label", "created (UTC)", "revoked")
    for k in rows:
        table.add_row(
            k.key_id,
            k.tenant_id,
            k.roles,
            k.label,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str,
    tenant: Annotated[
        str | None, typer.Option(help="The key's tenant (to find its database, if routed)")
    ] = None,
) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    with services_for(tenant=tenant) as services:
        services.keys.revoke(key_id)
    console.print(f"revoked {key_id}")
