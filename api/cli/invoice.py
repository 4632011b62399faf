"""`fapiao invoice ...`: issue an invoice, show it, and take it through each lifecycle step.

The steps are read from their one declaration (application/invoices/lifecycle.py): each becomes
a command whose fields are given as `--set name=value`, validated by the same model as the HTTP
body. Commands act as the API key given with --key (or FAPIAO_KEY), with the same roles.

No `from __future__ import annotations` here: each step's `--set` help is built at runtime into
its annotation, which typer must see evaluated. The steps are built when the group is first asked
for a command (`fapiao invoice ...`): the declaration's models are the heaviest import of the
command line, and `fapiao --help` and the other groups need none of it.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.main
from typer.core import TyperGroup

from api.cli.root import CliError, Key, act_as, field_pairs, services_for
from application.access import INVOICE_WRITERS

if TYPE_CHECKING:
    from pydantic import ValidationError
    from typer import _click

    from application.dto import CommandResult
    from application.invoices.lifecycle import LifecycleCommand


class _InvoiceGroup(TyperGroup):
    """`fapiao invoice`: issue and show, then the lifecycle steps, added on first use."""

    _steps_added = False

    def _add_steps(self) -> None:
        if not self._steps_added:
            self._steps_added = True
            for name, command in typer.main.get_group(_steps_app()).commands.items():
                self.add_command(command, name)

    def list_commands(self, ctx: "_click.Context") -> list[str]:
        self._add_steps()
        return super().list_commands(ctx)

    def get_command(self, ctx: "_click.Context", cmd_name: str) -> "_click.Command | None":
        self._add_steps()
        return super().get_command(ctx, cmd_name)


invoice_app = typer.Typer(
    help="Invoices: issue, show, and each lifecycle step (submit, acknowledge, ...).",
    no_args_is_help=True,
    cls=_InvoiceGroup,
)
InvoiceRef = Annotated[str, typer.Argument(help="The invoice's id or canonical key")]


def _invalid(e: "ValidationError") -> CliError:
    """One line naming every field and what is wrong with it."""
    return CliError(
        "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
        )
    )


def _print(result: "CommandResult") -> None:
    from api.http.schemas import CommandResponse

    out = CommandResponse.model_validate(result, from_attributes=True)
    print(json.dumps(out.model_dump(mode="json"), ensure_ascii=False))


def _fields_help(command_type: "type[LifecycleCommand]") -> str:
    parts = []
    for name, field in command_type.model_fields.items():
        required = field.is_required()
        default = "" if required or field.default is None else f" (default {field.default})"
        parts.append(f"{name}{' (required)' if required else default}")
    return ", ".join(parts)


def _lifecycle_command(command_type: "type[LifecycleCommand]") -> Callable[..., None]:
    def command(
        key: Key,
        invoice: InvoiceRef,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help=f"field=value (repeat): {_fields_help(command_type)}"),
        ] = None,
    ) -> None:
        from pydantic import ValidationError

        try:
            body = command_type.model_validate(field_pairs(set_))
        except ValidationError as e:
            raise _invalid(e) from None
        with services_for(key=key) as s:
            principal, by = act_as(s, key, body.occurred_at)
            principal.require(INVOICE_WRITERS)
            tenant = principal.tenant_id
            invoice_id = s.ledger.resolve_invoice_id(tenant, invoice)
            result = s.ledger.change_invoice(tenant, invoice_id, body, by)
        _print(result)

    command.__doc__ = f"{command_type.summary}."
    return command


@invoice_app.command("issue")
def invoice_issue(
    key: Key,
    file: Annotated[
        Path,
        typer.Argument(help="The invoice as JSON, as POST /v1/invoices takes it", dir_okay=False),
    ],
) -> None:
    """Issue (record) an invoice from a JSON file; warnings are printed with the result."""
    from pydantic import ValidationError

    from api.http.schemas import IssueInvoiceRequest

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"file: cannot read {file}: {e}") from None
    try:
        body = IssueInvoiceRequest.model_validate_json(text)
    except ValidationError as e:
        raise _invalid(e) from None
    with services_for(key=key) as s:
        principal, by = act_as(s, key, body.occurred_at)
        principal.require(INVOICE_WRITERS)
        result = s.ledger.issue_invoice(principal.tenant_id, body.to_draft(), by)
    _print(result)


@invoice_app.command("show")
def invoice_show(key: Key, invoice: InvoiceRef) -> None:
    """The invoice's current status (the status view, brought up to date first), as JSON."""
    from api.http.schemas import InvoiceOut

    with services_for(key=key) as s:
        principal, _ = act_as(s, key)
        tenant = principal.tenant_id
        invoice_id = s.ledger.resolve_invoice_id(tenant, invoice)
        s.bring_up_to_date("invoice_status")
        row = s.reader.get(tenant, invoice_id)
    if row is None:
        raise CliError(f"invoice {invoice} not found")
    print(json.dumps(InvoiceOut.from_row(row).model_dump(mode="json"), ensure_ascii=False))


def _steps_app() -> typer.Typer:
    """A command for each lifecycle step, in the declaration's order."""
    from application.invoices.lifecycle import LIFECYCLE

    steps = typer.Typer()
    for command_type in LIFECYCLE:
        steps.command(command_type.step.name.lower().replace("_", "-"))(
            _lifecycle_command(command_type)
        )
    return steps
