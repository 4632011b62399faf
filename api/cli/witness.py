"""`fapiao witness ...`: run a witness for a fapiao log (c2sp.org/tlog-witness), as an
auditor, a tenant or the group's internal audit would, and read what it refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.root import CliError, console, read_option_file

if TYPE_CHECKING:
    import socket

    from domain.evidence.checkpoint import VerifierKey

witness_app = typer.Typer(
    help="A witness that cosigns our checkpoints (c2sp.org/tlog-witness).", no_args_is_help=True
)

StateOption = Annotated[
    Path, typer.Option("--state", help="The witness's folder: its key and its state")
]
NameOption = Annotated[
    str, typer.Option("--name", help="The witness's key name, e.g. audit.example.com/w1")
]


def _name(name: str) -> str:
    from domain.evidence.checkpoint import NoteFormatError, check_key_name

    try:
        return check_key_name(name)
    except NoteFormatError as e:
        raise CliError(f"--name: {e}") from None


def _origin(origin: str) -> str:
    from domain.evidence.checkpoint import NoteFormatError, check_origin

    try:
        return check_origin(origin)
    except NoteFormatError as e:
        raise CliError(f"--origin: {e}") from None


LogKeyOption = Annotated[
    list[str] | None,
    typer.Option("--log-key", help="A verifier key of the log, one line (repeatable)"),
]
LogKeysOption = Annotated[
    Path | None,
    typer.Option(
        "--log-keys",
        help="A file of the log's verifier keys, one per line (`fapiao ledger keys > log.vkey`)",
    ),
]


def _log_keys(log_key: list[str] | None, log_keys: Path | None) -> list[VerifierKey]:
    from domain.evidence.checkpoint import NoteFormatError, parse_verifier_key

    keys = []
    for k in log_key or []:
        try:
            keys.append(parse_verifier_key(k))
        except NoteFormatError as e:
            raise CliError(f"--log-key: {e}") from None
    if log_keys is not None:
        lines = read_option_file(log_keys, "--log-keys").splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    keys.append(parse_verifier_key(line))
                except NoteFormatError as e:
                    raise CliError(f"--log-keys {log_keys}: line {number}: {e}") from None
    if not keys:
        raise CliError("the log's verifier key is needed: --log-key KEY or --log-keys FILE")
    return keys


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts: a bad port or a bind failure
    is one line, not a traceback from inside the server."""
    import socket

    if not 0 <= port <= 65535:
        raise CliError(f"--port {port}: a port is 1-65535 (0: any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:
        raise CliError(f"--host {host}: {e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except (OSError, OverflowError) as e:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {e}") from None
    sock.set_inheritable(True)
    return sock


@witness_app.command("key")
def witness_key(state: StateOption, name: NameOption) -> None:
    """Print the witness's verifier key (made on first use): give it to the log operator
    (FAPIAO_WITNESSES) and to verifiers (`fapiao evidence verify --witness-key`)."""
    from infrastructure.evidence.witness import witness_vkey

    print(witness_vkey(state, _name(name)).vkey)


@witness_app.command("serve")
def witness_serve(
    state: StateOption,
    name: NameOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin line")],
    log_key: LogKeyOption = None,
    log_keys: LogKeysOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port)")] = 8700,
) -> None:
    """Serve add-checkpoint: cosign each checkpoint of the log that our signature and the
    consistency proof from the last cosigned size prove; refuse (and keep) the rest."""
    import uvicorn

    from api.http.witness_app import create_witness_app
    from infrastructure.evidence.witness import WitnessService, witness_vkey

    name, origin, keys = _name(name), _origin(origin), _log_keys(log_key, log_keys)
    sock = _listen(host, port)
    witness = WitnessService(state, name, origin, keys)
    bound = sock.getsockname()[1]
    print(f"witness {witness_vkey(state, name).vkey} on http://{host}:{bound}", flush=True)
    config = uvicorn.Config(create_witness_app(witness), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


@witness_app.command("refusals")
def witness_refusals(
    state: StateOption,
    name: NameOption,
    origin: Annotated[str, typer.Option("--origin", help="The log's origin line")],
    log_key: LogKeyOption = None,
    log_keys: LogKeysOption = None,
) -> None:
    """The requests this witness refused as a split view (fork, rollback, bad proof), as JSON
    lines, each with the whole request (the log's signed checkpoint in it)."""
    from infrastructure.evidence.witness import WitnessService

    witness = WitnessService(state, _name(name), _origin(origin), _log_keys(log_key, log_keys))
    refusals = witness.refusals()
    for r in refusals:
        print(json.dumps(r, ensure_ascii=False))
    console.print(f"{len(refusals)} refused requests kept", highlight=False)
