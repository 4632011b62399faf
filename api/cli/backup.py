"""`fapiao backup create|restore|verify`: a backup file that proves itself, and the drill of
restoring it elsewhere and verifying every event and checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.root import CliError, Operator, cli_actor, console, err, services_for

if TYPE_CHECKING:
    from infrastructure.evidence.ledger_backup import RestoreReport

backup_app = typer.Typer(
    help="Backups: create, restore into an empty database, verify.", no_args_is_help=True
)
File = Annotated[Path, typer.Argument(help="The backup file", dir_okay=False)]


def _say(text: str) -> None:
    console.print(f"[dim]{text}[/dim]")


@backup_app.command("create")
def backup_create(
    file: Annotated[Path, typer.Argument(help="Where to write the backup", dir_okay=False)],
    operator: Operator = None,
) -> None:
    """Snapshot the database (pg_dump or SQLite's online backup), sign a checkpoint of exactly
    its events, and write it with the attachments, public keys and a SHA-256 manifest."""
    from infrastructure.evidence.ledger_backup import create_backup

    by = cli_actor(operator)
    if file.exists():
        raise CliError(f"{file} exists; choose a new name")
    with services_for() as services:
        report = create_backup(services, file.resolve(), by.actor, _say)
    console.print(
        f"{report.path}: {report.store}, {report.events} events (checkpoint "
        f"{report.checkpoint_size}), {report.attachments} attachments, {report.keys} public "
        f"keys, {report.bytes:,} bytes",
        highlight=False,
    )


def _outcome(report: RestoreReport, what: str) -> None:
    if not report.ok:
        for failure in report.failures:
            err.print(f"FAIL {failure}", highlight=False, markup=False, soft_wrap=True)
        err.print(f"{what} did NOT verify: {len(report.failures)} failures", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"OK: {what} into {report.target}: all {report.events} events verify against the "
        f"backup's signed checkpoint ({report.backup_checkpoint}), and so do its "
        f"{report.checkpoints} stored checkpoints and {report.attachments} attachments",
        highlight=False,
    )


@backup_app.command("restore")
def backup_restore(
    file: File,
    to: Annotated[
        str, typer.Option("--to", help="An empty database: postgresql://... or sqlite:///path")
    ],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the attachments go (default: the new SQLite file's folder, or "
            "FAPIAO_DATA_DIR)"
        ),
    ] = None,
) -> None:
    """Restore into an empty database, migrate, and verify every event and checkpoint; exit 1
    naming each failure unless all of them verify."""
    from infrastructure.evidence.ledger_backup import restore_backup, target_settings
    from infrastructure.settings import Settings

    target = target_settings(to, Settings())
    folder = data_dir or (target.sqlite_path.parent if not target.is_postgres else target.data_dir)
    report = restore_backup(file, target, folder.resolve(), _say)
    _outcome(report, "restore")


@backup_app.command("verify")
def backup_verify(
    file: File,
    scratch_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL server for a scratch database (default: FAPIAO_DATABASE_URL's)"
        ),
    ] = None,
) -> None:
    """Restore into a scratch database (dropped afterwards) and verify it: the drill."""
    from infrastructure.evidence.ledger_backup import target_settings, verify_backup
    from infrastructure.settings import Settings

    settings = Settings()
    server = target_settings(scratch_url, settings) if scratch_url else settings
    report = verify_backup(file, server if server.is_postgres else None, _say)
    _outcome(report, "verify")
