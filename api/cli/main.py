"""The `fapiao` command line, assembled: each group lives in its own module of api/cli/; this
module registers them in the order `fapiao --help` lists them, and turns every error into one
readable line and a non-zero exit."""

from __future__ import annotations

import sys

from api.cli import (
    backup,
    complaint,
    demo,
    evidence,
    invoice,
    keys,
    ledger,
    lost,
    monitoring,
    ops,
    policy,
    queue,
    reentry,
    witness,
)
from api.cli.root import CliError, app, err, is_validation_error, one_line
from application.service_errors import ApplicationError
from domain.errors import DomainError

# Errors told in one line whose modules are heavy: a command that can raise one has imported its
# module, so looking them up only among the modules loaded keeps `fapiao --help` fast.
_LAZY_ONE_LINE_ERRORS = (
    ("infrastructure.api_keys", "ApiKeyError"),
    ("infrastructure.evidence.ledger_backup", "BackupError"),
)

app.command()(monitoring.reconcile)
app.command()(ops.migrate)
app.command()(ops.serve)
app.command()(demo.demo)
app.command()(ops.worker)
app.command("callback-secret")(monitoring.callback_secret)
app.add_typer(ledger.ledger_app, name="ledger")
app.add_typer(evidence.evidence_app, name="evidence")
app.add_typer(backup.backup_app, name="backup")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(ops.projections_app, name="projections")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(reentry.reentry_app, name="reentry")
app.add_typer(complaint.complaint_app, name="complaint")
app.add_typer(lost.lost_app, name="lost")
app.add_typer(queue.queue_app, name="queue")
app.add_typer(invoice.invoice_app, name="invoice")
app.add_typer(witness.witness_app, name="witness")


def _one_line_errors() -> tuple[type[Exception], ...]:
    loaded = tuple(
        getattr(sys.modules[module], name)
        for module, name in _LAZY_ONE_LINE_ERRORS
        if module in sys.modules
    )
    return (CliError, DomainError, ApplicationError, ValueError, *loaded)


def main() -> None:
    try:
        app()
    except Exception as e:  # noqa: BLE001 - one readable line, not a traceback
        if is_validation_error(e):
            err.print(f"error: {one_line(e)}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(2)
        if isinstance(e, _one_line_errors()):
            err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(2)
        err.print(f"error: {type(e).__name__}: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
