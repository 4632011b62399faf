"""`fapiao ledger ...`: the tamper-evident log: verify, checkpoint, signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from api.cli.root import CliError, console, err, services_for
from infrastructure.bootstrap import Services

ledger_app = typer.Typer(
    help="The tamper-evident log: verify, checkpoint, keys.", no_args_is_help=True
)


def _all_rows(services: Services) -> Iterator[Any]:
    position = -(2**62)  # every row, whatever position someone gave it
    while True:
        rows = services.ledger.event_log.select_rows(position, 5000)
        if not rows:
            return
        yield from rows
        position = rows[-1].position


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every leaf from the stored events; check the tree and the latest checkpoint.
    Names every position that differs; exit 1 if any does."""
    with services_for() as services:
        services.bring_up_to_date("seal")
        report = services.merkle.verify(_all_rows(services))
    console.print(
        f"{report.leaves} sealed events, {report.unsealed} not sealed yet; latest "
        f"checkpoint covers {report.checkpoint_size or 0}"
    )
    if report.ok:
        console.print("the ledger matches its seal and its signed checkpoint")
        return
    for failure in report.failures:
        err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1)


@ledger_app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Seal what is new and sign a checkpoint now."""
    with services_for() as services:
        services.bring_up_to_date("seal")
        row = services.merkle.checkpoint_now()
    if row is None:
        raise CliError("the ledger is empty: nothing to checkpoint")
    print(row["note"], end="")


@ledger_app.command("rotate-key")
def ledger_rotate_key() -> None:
    """Add a new checkpoint signing key; older public keys stay published."""
    with services_for() as services:
        key = services.merkle.signer.rotate()
    print(f"new signing key {key.name} ({key.key_id}): {key.vkey}")


@ledger_app.command("keys")
def ledger_keys() -> None:
    """The published verifier keys (C2SP note format)."""
    with services_for() as services:
        for key in services.merkle.signer.public_keys():
            print(key.vkey)
