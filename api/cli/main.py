"""The `fapiao` command line. Commands live by group in api/cli_*.py; this module assembles
them and turns every error into one readable line and a non-zero exit."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from api.cli import audit, ops, policy  # noqa: F401 - they register their commands
from api.cli.remedies import complaint_app, lost_app, queue_app, reentry_app
from api.cli.root import CliError, app, err, one_line
from application.errors import ApplicationError
from domain.errors import DomainError
from infrastructure.api_keys import KeyStoreError

app.add_typer(reentry_app, name="reentry")
app.add_typer(complaint_app, name="complaint")
app.add_typer(lost_app, name="lost")
app.add_typer(queue_app, name="queue")


def main() -> None:
    try:
        app()
    except ValidationError as e:
        err.print(f"error: {one_line(e)}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (CliError, DomainError, ApplicationError, KeyStoreError, ValueError) as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - one readable line, not a traceback
        err.print(f"error: {type(e).__name__}: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
