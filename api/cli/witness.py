"""`fapiao witness ...`: run a witness for a fapiao log (c2sp.org/tlog-witness), as an
auditor, a tenant or the group's internal audit would, and read what it refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.root import CliError, console
from domain.evidence.checkpoint import NoteFormatError, parse_verifier_key

witness_app = typer.Typer(
    help="A witness that cosigns our checkpoints (c2sp.org/tlog-witness).", no_args_is_help=True
)

StateOption = Annotated[
    Path, typer.Option("--state", help="The witness's folder: its key and its state")
]
NameOption = Annotated[
    str, typer.Option("--name", help="The witness's key name, e.g. audit.example.com/w1")
]


@witness_app.command("key")
def witness_key(state: StateOption, name: NameOption) -> None:
    """Print the witness's verifier key (made on first use): give it to the log operator
    (FAPIAO_WITNESSES) and to verifiers (`fapiao evidence verify --witness-key`)."""
    from infrastructure.evidence.witness import witness_vkey

    print(witness_vkey(state, name).vkey)


@witness_app.command("serve")
def witness_serve(
    state: StateOption,
    name: NameOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin line")],
    log_key: Annotated[
        list[str], typer.Option("--log-key", help="A verifier key of the log (repeatable)")
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8700,
) -> None:
    """Serve add-checkpoint: cosign each checkpoint of the log that our signature and the
    consistency proof from the last cosigned size prove; refuse (and keep) the rest."""
    import uvicorn

    from api.http.witness_app import create_witness_app
    from infrastructure.evidence.witness import WitnessService, witness_vkey

    try:
        keys = [parse_verifier_key(k) for k in log_key]
    except NoteFormatError as e:
        raise CliError(f"--log-key: {e}") from None
    witness = WitnessService(state, name, origin, keys)
    print(f"witness {witness_vkey(state, name).vkey} on http://{host}:{port}", flush=True)
    uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning")


@witness_app.command("refusals")
def witness_refusals(
    state: StateOption,
    name: NameOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin line")],
    log_key: Annotated[list[str], typer.Option("--log-key", help="A verifier key of the log")],
) -> None:
    """The requests this witness refused as a split view (fork, rollback, bad proof), as JSON
    lines, each with the whole request (the log's signed checkpoint in it)."""
    from infrastructure.evidence.witness import WitnessService

    witness = WitnessService(state, name, origin, [parse_verifier_key(k) for k in log_key])
    refusals = witness.refusals()
    for r in refusals:
        print(json.dumps(r, ensure_ascii=False))
    console.print(f"{len(refusals)} refused requests kept", highlight=False)
