"""Shared pieces of the `fapiao` command line: the app, consoles, errors, store access."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from rich.console import Console

from application.access import INVOICE_WRITERS, Principal
from domain.errors import InvalidFieldError

if TYPE_CHECKING:
    # Heavy (the stores, SQLAlchemy, alembic): imported where a command needs them, so that
    # `fapiao --help` starts fast.
    from application.remedies.case_commands import CaseResult
    from domain.base import Provenance
    from infrastructure.bootstrap import Services
    from infrastructure.settings import Settings

app = typer.Typer(
    help="fapiao-ledger: the trusted record of every invoice's journey to the tax platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A failure to report as one line."""


MAX_OPTION_FILE_BYTES = 1024 * 1024  # keys, CA certificates, a checkpoint, the keys' JSON


def read_option_file(path: Path, what: str) -> str:
    """A file named on the command line: a regular file, at most 1 MiB, UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused below.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CliError(f"{what} {path}: not a regular file")
            data = f.read(MAX_OPTION_FILE_BYTES + 1)
        if len(data) > MAX_OPTION_FILE_BYTES:
            raise CliError(f"{what} {path}: larger than the limit of 1 MiB")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{what} {path}: {e}") from None


@contextmanager
def services_for(
    settings: Settings | None = None, *, tenant: str | None = None, key: str | None = None
) -> Iterator[Services]:
    """The services of the database this command acts on: the tenant's (or the key's tenant's)
    when FAPIAO_TENANT_DATABASES routes it elsewhere, else FAPIAO_DATABASE_URL's."""
    from infrastructure.bootstrap import build_services
    from infrastructure.settings import Settings
    from infrastructure.store import migrate as migrations

    settings = settings or Settings()
    if tenant:
        settings = settings.for_tenant(tenant)
    elif key and settings.tenant_databases:
        settings = settings_of_key(settings, key)
    if not settings.is_postgres and not settings.sqlite_path.exists():
        raise CliError(
            f"no ledger at {settings.sqlite_path} (set FAPIAO_DATA_DIR or FAPIAO_DATABASE_URL "
            "to use another); to start one here, run `fapiao migrate` first"
        )
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


def settings_of_key(settings: Settings, key: str) -> Settings:
    """The database whose key store knows this key (and holds its tenant)."""
    from infrastructure.bootstrap import key_cell

    return key_cell(settings, key) or settings


def is_validation_error(e: BaseException) -> bool:
    """A pydantic ValidationError (looked up only if pydantic was imported: only then can one have
    been raised, and the command line starts faster without it)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(e, pydantic.ValidationError)


def one_line(e: Exception) -> str:
    if is_validation_error(e):
        return "; ".join(
            f"FAPIAO_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")  # a rule across settings
            for err in e.errors()
        )
    return str(e)


def os_user() -> str:
    import getpass

    return os.environ.get("USER") or getpass.getuser()


Operator = Annotated[
    str | None,
    typer.Option(
        "--operator",
        envvar="FAPIAO_OPERATOR",
        help="Who runs this (recorded as cli:NAME); default: the OS user",
    ),
]


def cli_actor(operator: str | None = None) -> Provenance:
    """Provenance of a CLI command: the named operator, else the OS user."""
    from domain.base import Provenance, Source

    name = (operator or os_user()).strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise CliError("operator: a printable name of at most 100 characters")
    return Provenance(f"cli:{name}", Source.CLI, datetime.now(UTC))


Tenant = Annotated[str, typer.Option(help="The tenant's unified social credit code")]


def tenant_code(services: Services, code: str) -> str:
    """The tenant, checked to exist in this ledger (one line naming the fix otherwise)."""
    return services.keys.require_tenant(code)


def aware_time(field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{field}: {text!r} is not an ISO 8601 time") from None
    from domain.calendar import SHANGHAI  # zoneinfo: only where a time is read

    # A time without an offset is Beijing time: that is what clerks read on the platform.
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


# ---- acting as an API key (the remedies' commands) --------------------------------------

Key = Annotated[str, typer.Option("--key", envvar="FAPIAO_KEY", help="API key to act as")]


def act_as(
    services: Services, key: str, occurred_at: datetime | None = None
) -> tuple[Principal, Provenance]:
    """The key's principal, and provenance for what it does (business time: now by default)."""
    from domain.base import Provenance, Source

    principal = services.keys.authenticate(key)
    if principal is None:
        raise CliError("the API key is unknown or revoked")
    return principal, Provenance(principal.actor, Source.CLI, occurred_at or datetime.now(UTC))


@contextmanager
def store_file(services: Services, file: Path) -> Iterator[Any]:
    """Keep the file in the attachment store for the block (refused by content, leaving
    nothing); a file newly stored is removed again if the block fails."""
    with file.open("rb") as f, services.attachments.staged(f, file.name) as ref:
        yield ref


def print_case(result: CaseResult) -> None:
    print(f"{result.number} {result.status} (case {result.case_id}, position {result.position})")


def field_pairs(items: list[str] | None) -> dict[str, str]:
    """`--set name=value` options as a dict (the value may itself contain `=`)."""
    fields = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidFieldError("set", f"{item!r} is not field=value", "format")
        fields[name.strip()] = value
    return fields


def case_id(field: str, text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a case id", "uuid") from None


def date_option(field: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidFieldError(field, f"{text!r} is not a date (YYYY-MM-DD)", "date") from None


CaseCommand = Callable[..., "CaseResult"]


def case_step(
    key: str,
    command: Callable[[Services], CaseCommand],
    field: str,
    case: str,
    *args: Any,
    roles: frozenset[Any] = INVOICE_WRITERS,
    person: bool = False,
) -> None:
    """Act as the key: check its roles, then `command(services)(tenant, case, [person], *args, by)`
    (`command` picks the service's method, e.g. `lambda s: s.reentry.review`)."""
    with services_for(key=key) as s:
        p, by = act_as(s, key)
        p.require(roles)
        who = (p.person,) if person else ()
        print_case(command(s)(p.tenant_id, case_id(field, case), *who, *args, by))
