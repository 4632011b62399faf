"""The witness's and the verifier's command lines refuse bad input in one line, non-zero."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.evidence.checkpoint import NoteFormatError, parse_verifier_key, verifier_key
from domain.evidence.cosignature import parse_cosigner_vkey
from infrastructure.evidence.cosigning import raw_public
from infrastructure.evidence.witness import WitnessService
from tests.witness_procs import cli, free_port

BAD_WITNESSES = '{"http://127.0.0.1:9/": "+97997612+BM' + "A" * 42 + '="}'
LOG_KEY = verifier_key("example.test/log/k1", raw_public(Ed25519PrivateKey.generate()))


def _one_line_refusal(r: object, *wanted: str) -> None:
    assert r.returncode != 0, r.stdout  # type: ignore[attr-defined]
    assert r.stdout == "", r.stdout  # type: ignore[attr-defined]
    line = r.stderr.strip()  # type: ignore[attr-defined]
    assert line.count("\n") == 0 and "Traceback" not in line, line
    for w in wanted:
        assert w in line, line


def _serve(state: Path, *extra: str) -> object:
    return cli(
        "witness", "serve", "--state", str(state), "--name", "audit.test/w",
        "--origin", "example.test/log", "--log-key", LOG_KEY, *extra,
    )  # fmt: skip


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_refuses_a_port_out_of_range_in_one_line(tmp_path: Path, port: str) -> None:
    _one_line_refusal(_serve(tmp_path, "--port", port), f"--port {port}", "1-65535")


def test_serve_reports_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen(1)
        _one_line_refusal(_serve(tmp_path, "--port", str(port)), f"127.0.0.1:{port}")


@pytest.mark.parametrize("name", ["", "bad name", "bad+name", "tab\tname", "x" * 300])
def test_witness_commands_refuse_a_bad_key_name(tmp_path: Path, name: str) -> None:
    _one_line_refusal(cli("witness", "key", "--state", str(tmp_path), "--name", name), "--name")
    serve = cli(
        "witness", "serve", "--state", str(tmp_path), "--name", name,
        "--origin", "example.test/log", "--log-key", LOG_KEY, "--port", "0",
    )  # fmt: skip
    _one_line_refusal(serve, "--name")
    assert not (tmp_path / "witness.db").exists()


@pytest.mark.parametrize("origin", ["", " padded", "line\nbreak", "o" * 300])
def test_witness_commands_refuse_a_bad_origin(tmp_path: Path, origin: str) -> None:
    for command in ("serve", "refusals"):
        r = cli(
            "witness", command, "--state", str(tmp_path), "--name", "audit.test/w",
            "--origin", origin, "--log-key", LOG_KEY,
        )  # fmt: skip
        _one_line_refusal(r, "--origin")


def test_verifier_keys_with_a_bad_name_are_refused_everywhere(tmp_path: Path) -> None:
    raw = raw_public(Ed25519PrivateKey.generate())
    for name in ("", "two words"):
        with pytest.raises(NoteFormatError, match="key name"):
            verifier_key(name, raw)
    # A key string with an empty name (what `witness key --name ""` used to print).
    good = verifier_key("n", raw)
    empty_name = "+" + good.split("+", 1)[1]
    with pytest.raises(NoteFormatError, match="key name"):
        parse_verifier_key(empty_name)
    witness = "+97997612+BM" + "A" * 42 + "="
    with pytest.raises(NoteFormatError, match="key name"):
        parse_cosigner_vkey(witness)
    r = cli("evidence", "verify", str(tmp_path / "missing.zip"), "--witness-key", witness)
    assert r.returncode != 0
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"PK\x05\x06" + bytes(18))
    _one_line_refusal(
        cli("evidence", "verify", str(bundle), "--witness-key", witness), "--witness-key", "name"
    )
    with pytest.raises(NoteFormatError):
        WitnessService(tmp_path, "bad name", "example.test/log", [parse_verifier_key(LOG_KEY)])


def test_the_log_origin_setting_is_checked(tmp_path: Path) -> None:
    from infrastructure.bootstrap import build_services
    from infrastructure.settings import Settings

    url = f"sqlite:///{tmp_path / 'l.db'}"
    for origin in ("", "two words", "a+b"):
        with pytest.raises(ValueError, match="FAPIAO_LOG_ORIGIN"):
            build_services(Settings(database_url=url, log_origin=origin))
    env = {"FAPIAO_DATABASE_URL": url, "FAPIAO_DATA_DIR": str(tmp_path)}
    assert cli("migrate", env=env).returncode == 0
    for origin in ("two words", "a+b"):
        r = cli("ledger", "keys", env={**env, "FAPIAO_LOG_ORIGIN": origin})
        _one_line_refusal(r, "FAPIAO_LOG_ORIGIN")
    assert not (tmp_path / "keys").exists()  # no key made under a bad name
    r = cli("ledger", "keys", env={**env, "FAPIAO_WITNESSES": BAD_WITNESSES})
    _one_line_refusal(r, "witness http://127.0.0.1:9/", "name")


def _witnesses(n: int) -> str:
    import json

    from domain.evidence.cosignature import cosigner_vkey

    return json.dumps(
        {
            f"http://127.0.0.1:{9 + i}/": cosigner_vkey(
                f"w{i}.test", raw_public(Ed25519PrivateKey.generate())
            )
            for i in range(n)
        }
    )


def test_a_quorum_larger_than_the_witnesses_is_refused(tmp_path: Path) -> None:
    import json

    from pydantic import ValidationError

    from infrastructure.settings import Settings

    one = json.loads(_witnesses(1))
    with pytest.raises(ValidationError, match="FAPIAO_WITNESS_QUORUM=5.*FAPIAO_WITNESSES"):
        Settings(witnesses=one, witness_quorum=5)
    with pytest.raises(ValidationError, match="FAPIAO_WITNESS_QUORUM=1.*FAPIAO_WITNESSES"):
        Settings(witness_quorum=1)
    assert Settings(witnesses=one, witness_quorum=1).witness_quorum == 1
    assert Settings(witness_quorum=0).witness_quorum == 0
    env = {
        "FAPIAO_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "FAPIAO_DATA_DIR": str(tmp_path),
        "FAPIAO_WITNESSES": _witnesses(1),
        "FAPIAO_WITNESS_QUORUM": "5",
    }
    for command in (["ledger", "anchor"], ["serve", "--port", "0"], ["worker"]):
        r = cli(*command, env=env)
        _one_line_refusal(r, "FAPIAO_WITNESS_QUORUM=5", "FAPIAO_WITNESSES names 1")
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize(
    "option", ["--public-key", "--tsa-ca", "--known-checkpoint", "--key-rotations"]
)
def test_the_verifier_reads_option_files_bounded_and_regular(tmp_path: Path, option: str) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"PK\x05\x06" + bytes(18))
    keys = tmp_path / "log.vkey"
    keys.write_text(LOG_KEY + "\n")
    need = [] if option != "--key-rotations" else ["--public-key", str(keys)]
    # /dev/zero used to hang the verifier: it is not a regular file.
    r = cli("evidence", "verify", str(bundle), *need, option, "/dev/zero")
    _one_line_refusal(r, option, "/dev/zero", "not a regular file")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = cli("evidence", "verify", str(bundle), *need, option, str(fifo))
    _one_line_refusal(r, option, "not a regular file")
    big = tmp_path / "big.pem"
    big.write_bytes(b"A" * (1024 * 1024 + 1))
    r = cli("evidence", "verify", str(bundle), *need, option, str(big))
    _one_line_refusal(r, option, "1 MiB")


def test_the_verifier_refuses_a_bundle_that_is_not_a_regular_file() -> None:
    _one_line_refusal(cli("evidence", "verify", "/dev/zero"), "/dev/zero", "not a regular file")


def test_a_file_of_several_log_keys_is_read_and_a_multiline_key_named(tmp_path: Path) -> None:
    second = verifier_key("example.test/log/k2", raw_public(Ed25519PrivateKey.generate()))
    keys = tmp_path / "log.vkey"
    keys.write_text(f"{LOG_KEY}\n{second}\n")  # what `fapiao ledger keys` prints after a rotation
    state = tmp_path / "w"
    # The README's old `--log-key "$(cat log.vkey)"`: several lines, said so.
    r = cli(
        "witness", "refusals", "--state", str(state), "--name", "audit.test/w",
        "--origin", "example.test/log", "--log-key", keys.read_text(),
    )  # fmt: skip
    _one_line_refusal(r, "--log-key", "2 lines given, expected one key")
    with pytest.raises(NoteFormatError, match="2 lines given"):
        parse_cosigner_vkey("a+b+c\nd+e+f")
    r = cli(
        "witness", "refusals", "--state", str(state), "--name", "audit.test/w",
        "--origin", "example.test/log", "--log-keys", str(keys),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "0 refused requests kept" in r.stdout
    keys.write_text(f"{LOG_KEY}\nnot-a-key\n")
    r = cli(
        "witness", "refusals", "--state", str(state), "--name", "audit.test/w",
        "--origin", "example.test/log", "--log-keys", str(keys),
    )  # fmt: skip
    _one_line_refusal(r, "--log-keys", "line 2")
    r = cli(
        "witness", "refusals", "--state", str(state), "--name", "audit.test/w",
        "--origin", "example.test/log",
    )  # fmt: skip
    _one_line_refusal(r, "--log-key KEY or --log-keys FILE")
