"""`fapiao queue show ROLE`: the cases waiting for a role, acting as the --key given."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from api.cli.root import (
    Key,
    act_as,
    services_for,
)
from application.access import APPROVERS, INVOICE_WRITERS, REVIEWERS
from domain.errors import InvalidFieldError

queue_app = typer.Typer(help="Work queues per role.", no_args_is_help=True)


@queue_app.command("show")
def queue_show(
    key: Key,
    role: Annotated[str, typer.Argument(help="reviewer, approver, clerk")],
    days: Annotated[int, typer.Option(help="Clerk: replies due within")] = 3,
) -> None:
    """The cases waiting for this role, with counts."""
    with services_for(key=key) as s:
        p, _ = act_as(s, key)
        t = p.tenant_id
        s.bring_up_to_date("cases")
        lists: dict[str, list[dict[str, Any]]]
        if role == "reviewer":
            p.require(REVIEWERS)
            lists = {"awaiting review": s.cases.queue(t, "reentry", ["submitted"])}
        elif role == "approver":
            p.require(APPROVERS)
            lists = {"awaiting approval": s.cases.queue(t, "reentry", ["reviewed"])}
        elif role == "clerk":
            p.require(INVOICE_WRITERS)
            lists = {
                "returned applications": s.cases.queue(t, "reentry", ["returned"]),
                "replies due": s.cases.queue(
                    t, "complaint", ["open"], s.ledger.today() + timedelta(days=days)
                ),
                "resolved, invoices still missing": s.cases.queue(
                    t, "complaint", ["resolved"], flagged=True
                ),
            }
        else:
            raise InvalidFieldError("role", "reviewer, approver or clerk", "enum")
        for title, rows in lists.items():
            print(f"{title}: {len(rows)}")
            for r in rows:
                print(
                    f"  {r['number']} {r['status']} owner {r['owner']}"
                    + (" FLAGGED" if r["flagged"] else "")
                )
