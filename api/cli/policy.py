"""`fapiao policy ...`: acknowledgement window, review days, maintenance windows."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import typer
from rich.table import Table

from api.cli.root import (
    CliError,
    Operator,
    Tenant,
    aware_time,
    cli_actor,
    console,
    date_option,
    services_for,
    tenant_code,
)

if TYPE_CHECKING:
    from application.monitoring.policy_service import PolicyView

policy_app = typer.Typer(
    help="Tenant policy: acknowledgement window, maintenance windows, review and closure days.",
    no_args_is_help=True,
)


def _print_policy(view: PolicyView) -> None:
    console.print(
        f"{view.tenant_id}: acknowledgement window {view.ack_window.total_seconds() / 3600:g} h"
    )
    from domain.calendar import SHANGHAI

    table = Table("window", "starts (Beijing)", "ends (Beijing)", "note")
    for w in view.windows:
        table.add_row(
            str(w.window_id),
            f"{w.starts_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}",
            f"{w.ends_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}",
            w.note,
        )
    console.print(table)
    console.print(f"working days: {view.calendar}", highlight=False)
    for day, note in view.closure_days.items():
        console.print(f"closed {day.isoformat()} {note}".rstrip(), highlight=False)


@policy_app.command("show")
def policy_show(tenant: Tenant) -> None:
    """The acknowledgement window and maintenance windows in force."""
    with services_for(tenant=tenant) as services:
        _print_policy(services.policies.get_policy(tenant_code(services, tenant)))


@policy_app.command("ack-window")
def policy_ack_window(
    tenant: Tenant,
    hours: Annotated[float, typer.Option(help="Hours")],
    operator: Operator = None,
) -> None:
    """Set the acknowledgement window for uploads from now on."""
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        window = timedelta(hours=hours)
        _print_policy(services.policies.set_ack_window(code, window, cli_actor(operator)))


@policy_app.command("review-days")
def policy_review_days(
    tenant: Tenant,
    days: Annotated[int, typer.Option(help="Working days")],
    operator: Operator = None,
) -> None:
    """Working days within which supplementary-entry applications must be decided."""
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        view = services.policies.set_review_days(code, days, cli_actor(operator))
        _print_policy(view)
        console.print(f"review deadline: {view.review_working_days} working days")


@policy_app.command("maintenance-add")
def policy_maintenance_add(
    tenant: Tenant,
    starts: Annotated[str, typer.Option(help="ISO time; no offset means Beijing time")],
    ends: Annotated[str, typer.Option(help="ISO time; no offset means Beijing time")],
    note: Annotated[str, typer.Option(help="What the platform announced")] = "",
    operator: Operator = None,
) -> None:
    """Declare a platform maintenance window: its time does not count toward any window."""
    with services_for(tenant=tenant) as services:
        _, view = services.policies.declare_maintenance(
            tenant_code(services, tenant),
            aware_time("starts", starts),
            aware_time("ends", ends),
            note,
            cli_actor(operator),
        )
        _print_policy(view)


@policy_app.command("maintenance-withdraw")
def policy_maintenance_withdraw(tenant: Tenant, window_id: str, operator: Operator = None) -> None:
    """Withdraw a maintenance window declared by mistake."""
    try:
        wid = UUID(window_id)
    except ValueError:
        raise CliError(f"window_id: {window_id!r} is not a window id") from None
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        _print_policy(services.policies.withdraw_maintenance(code, wid, cli_actor(operator)))


Days = Annotated[list[str], typer.Option("--day", help="A date YYYY-MM-DD (repeat)")]


def _days(texts: list[str]) -> list[date]:
    return [d for d in (date_option("day", t) for t in texts) if d is not None]


@policy_app.command("closure-add")
def policy_closure_add(
    tenant: Tenant,
    day: Days,
    note: Annotated[str, typer.Option(help="Why the company is closed")] = "",
    operator: Operator = None,
) -> None:
    """Declare company closure days: not working days for deadlines set from now on."""
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        view = services.policies.declare_closure_days(code, _days(day), note, cli_actor(operator))
        _print_policy(view)


@policy_app.command("closure-withdraw")
def policy_closure_withdraw(tenant: Tenant, day: Days, operator: Operator = None) -> None:
    """Make declared closure days working days again."""
    with services_for(tenant=tenant) as services:
        code = tenant_code(services, tenant)
        _print_policy(
            services.policies.withdraw_closure_days(code, _days(day), cli_actor(operator))
        )
