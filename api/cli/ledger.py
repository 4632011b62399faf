"""`fapiao ledger ...`: the tamper-evident log: verify, checkpoint, signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from api.cli.root import CliError, console, err, services_for

if TYPE_CHECKING:
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
    """Check, reading only: every stored event against its sealed leaf (events not sealed yet
    are counted, not sealed), both trees, and every stored checkpoint (its note, signature,
    roots, frontier, and consistency with the one before). Names every fault; exit 1 if any."""
    with services_for() as services:
        report = services.merkle.verify(_all_rows(services))
        health = services.merkle.health()
    console.print(
        f"{report.leaves} sealed events, {report.unsealed} not sealed yet; "
        f"{report.checkpoints} checkpoints, the latest covers {report.checkpoint_size or 0}"
    )
    if health.refusing:
        err.print(
            f"the log is refusing to sign since {health.since}: {health.reason}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if report.ok:
        console.print("the ledger matches its seal and every signed checkpoint")
        return
    first = report.first_bad_position
    if first is not None:
        err.print(f"first bad position: {first}", highlight=False, markup=False)
    for failure in report.failures:
        err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1)


@ledger_app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Seal what is new and sign a checkpoint now (only once it is proven to extend the
    previous one). While the log refuses to sign, this proves again: once the fault is
    repaired (restored from a backup, say), it resolves the refusal and signing resumes."""
    with services_for() as services:
        services.bring_up_to_date("seal")
        row = services.merkle.checkpoint_now(recheck=True)
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
    """The published verifier keys (C2SP note format), one per line: a file of these is what
    `fapiao evidence verify --public-key` reads."""
    with services_for() as services:
        for key in services.merkle.signer.public_keys():
            print(key.vkey)


@ledger_app.command("status")
def ledger_status() -> None:
    """The latest checkpoint and its anchors: timestamp tokens and witness cosignatures
    outstanding, and why the last try of each TSA or witness failed."""
    with services_for() as services:
        latest = services.merkle.latest()
        status = services.anchors.status()
        anchors = services.anchors.anchors(int(latest["tree_size"])) if latest else None
    if latest is None:
        console.print("no checkpoint signed yet")
    else:
        assert anchors is not None
        console.print(
            f"latest checkpoint: {latest['tree_size']} events, signed {latest['signed_at']}; "
            f"{len(anchors['timestamps'])} timestamp tokens, "
            f"{len(anchors['cosignatures'])} cosignatures (quorum {status.quorum})",
            highlight=False,
        )
    console.print(
        f"timestamp tokens outstanding: {status.tokens_outstanding}; "
        f"cosignatures outstanding: {status.cosignatures_outstanding}",
        highlight=False,
    )
    for target, error in sorted(status.errors.items()):
        err.print(f"{target}: {error}", highlight=False, markup=False, soft_wrap=True)


@ledger_app.command("anchor")
def ledger_anchor() -> None:
    """Fetch the timestamp tokens and cosignatures missing now (one round; `fapiao serve` and
    `fapiao worker` do this continuously) and announce anchored checkpoints to tenants."""
    with services_for() as services:
        kept = services.anchors.run_once()
        status = services.anchors.status()
    console.print(
        f"{kept} anchors kept; timestamp tokens outstanding: {status.tokens_outstanding}; "
        f"cosignatures outstanding: {status.cosignatures_outstanding}",
        highlight=False,
    )
    for target, error in sorted(status.errors.items()):
        err.print(f"{target}: {error}", highlight=False, markup=False, soft_wrap=True)
