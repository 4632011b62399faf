"""`fapiao --help` starts fast because the command line imports the stores, the migrations and the
lifecycle's models only where a command needs them (benchmarks/cli_start_bench.py times it)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "psycopg", "alembic", "pydantic", "infrastructure.bootstrap")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_command_line_imports_no_store_migration_or_model_library() -> None:
    loaded = set(_loaded_after("import api.cli.main"))
    assert "api.cli.invoice" in loaded  # the probe did import the whole command line
    assert [m for m in HEAVY if m in loaded] == []


def test_building_the_help_of_every_command_still_imports_nothing_heavy_but_the_steps() -> None:
    # Typer turns every group into click commands; only the invoice group's steps (built from
    # the lifecycle's pydantic models) may load pydantic, and none may load a store.
    code = (
        "import typer.main\nfrom api.cli.main import app\n"
        "root = typer.main.get_command(app)\n"
        "def walk(c):\n"
        "    for n in getattr(c, 'list_commands', lambda _: [])(None):\n"
        "        walk(c.get_command(None, n))\n"
        "walk(root)"
    )
    loaded = set(_loaded_after(code))
    assert "application.invoices.lifecycle" in loaded
    assert [m for m in ("sqlalchemy", "psycopg", "alembic") if m in loaded] == []


def test_the_invoice_group_lists_issue_show_then_every_lifecycle_step_in_order() -> None:
    import typer.main

    from api.cli.main import app
    from application.invoices.lifecycle import LIFECYCLE

    group = typer.main.get_command(app).get_command(None, "invoice")  # type: ignore[attr-defined]
    steps = [c.step.name.lower().replace("_", "-") for c in LIFECYCLE]
    assert group.list_commands(None) == ["issue", "show", *steps]


def test_help_loads_no_progress_bar_socket_or_time_zone_database() -> None:
    # Each is needed by a command's body only (a progress bar, a listening socket, Beijing time);
    # typer and rich's help renderer are the rest of what `fapiao --help` imports.
    code = (
        "import sys\nsys.argv = ['fapiao', '--help']\nfrom api.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    loaded = set(_loaded_after(code))
    assert "typer.rich_utils" in loaded  # the probe did render the help
    assert [m for m in ("rich.progress", "socket", "zoneinfo", "hashlib") if m in loaded] == []
