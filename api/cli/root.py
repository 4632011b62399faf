"""Shared pieces of the `fapiao` command line: the app, consoles, errors, store access."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from pydantic import ValidationError
from rich.console import Console

from application.invoices.ledger import SHANGHAI
from domain.base import Provenance, Source
from infrastructure.bootstrap import Services, build_services
from infrastructure.settings import Settings
from infrastructure.store import migrate as migrations

app = typer.Typer(
    help="fapiao-ledger: the trusted record of every invoice's journey to the tax platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A failure to report as one line."""


@contextmanager
def services_for(settings: Settings | None = None) -> Iterator[Services]:
    settings = settings or Settings()
    revision = migrations.current_revision(settings)
    if revision != migrations.head_revision(settings):
        raise CliError(
            f"the database at {settings.describe()} is at migration {revision}; "
            "run `fapiao migrate` first"
        )
    services = build_services(settings)
    try:
        yield services
    finally:
        services.close()


def one_line(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(
            f"FAPIAO_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in e.errors()
        )
    return str(e)


def cli_actor() -> Provenance:
    user = os.environ.get("USER") or getpass.getuser()
    return Provenance(f"cli:{user}", Source.CLI, datetime.now(UTC))


def aware_time(field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{field}: {text!r} is not an ISO 8601 time") from None
    # A time without an offset is Beijing time: that is what clerks read on the platform.
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)
