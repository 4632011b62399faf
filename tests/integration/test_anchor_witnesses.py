"""Two `fapiao witness serve` processes hold the log to its history: they cosign a growing
log (each new checkpoint with a consistency proof from the size they last cosigned), and after
the log is rewritten and re-signed with the same key they refuse, keeping the request."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.evidence.checkpoint import parse_signed_note
from domain.evidence.cosignature import parse_cosigner_vkey
from infrastructure.bootstrap import Services, build_services
from infrastructure.evidence.cosigning import verify_cosignature
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, by
from tests.witness_procs import WitnessProc, witness_process

SEED = secrets.token_bytes(32).hex()


def _keyed(settings: Settings, witnesses: list[WitnessProc] | None = None) -> Settings:
    return settings.model_copy(
        update={
            "signing_key": SecretStr(SEED),
            "witnesses": {w.url: w.vkey for w in witnesses or []},
            "anchor_backoff_seconds": 0.01,
            "outbound_allow": "127.0.0.1/32",  # the witnesses are on loopback
        }
    )


def _grow(services: Services, invoices: int) -> dict[str, object]:
    for _ in range(invoices):
        services.ledger.issue_invoice(SELLER, a_draft(), by())
    services.bring_up_to_date("seal")
    row = services.merkle.checkpoint_now()
    assert row is not None
    return row


@pytest.fixture
def witnesses(settings: Settings, tmp_path: Path) -> Iterator[list[WitnessProc]]:
    probe = build_services(_keyed(settings))
    try:
        vkey = next(k.vkey for k in probe.merkle.signer.public_keys() if k.name.endswith("/env"))
        origin = probe.merkle.signer.origin
    finally:
        probe.close()
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                witness_process(tmp_path / f"w{i}", f"audit{i}.example/w", origin, [vkey])
            )
            for i in (1, 2)
        ]


def test_two_witnesses_cosign_a_growing_log_and_refuse_a_rewritten_one(
    settings: Settings,
    sqlite_template: Path,
    tmp_path: Path,
    witnesses: list[WitnessProc],
) -> None:
    honest = build_services(_keyed(settings, witnesses))
    try:
        sizes = []
        for invoices in (2, 3, 1):
            row = _grow(honest, invoices)
            assert honest.anchors.run_once() == 2, honest.anchors.status().errors
            size = int(row["tree_size"])
            sizes.append(size)
            cosigs = honest.anchors.anchors(size)["cosignatures"]
            assert {c["witness"] for c in cosigs} == {w.name for w in witnesses}
            body, _ = parse_signed_note(str(row["note"]))
            note = honest.anchors.anchored_note(str(row["note"]), size)
            _, sigs = parse_signed_note(note)
            for w in witnesses:
                key = parse_cosigner_vkey(w.vkey)
                assert any(verify_cosignature(s, key, body) for s in sigs)
            assert honest.anchors.status().cosignatures_outstanding == 0
        assert sizes == sorted(sizes) and len(set(sizes)) == 3
        with pytest.raises(DBAPIError, match="append-only"):
            with honest.write_engine.begin() as conn:
                conn.execute(text("DELETE FROM checkpoint_cosignatures"))
    finally:
        honest.close()
    held = sizes[-1]

    # The operator rebuilds the log elsewhere with other events and re-signs it with the key.
    for label, invoices in (("larger", 9), ("smaller", 1)):
        path = tmp_path / f"rewritten-{label}.db"
        shutil.copy(sqlite_template, path)
        forged = build_services(
            _keyed(
                Settings(
                    database_url=f"sqlite:///{path}",
                    environment="test",
                    data_dir=tmp_path / label,
                ),
                witnesses,
            )
        )
        try:
            row = _grow(forged, invoices)
            assert int(row["tree_size"]) != held
            assert forged.anchors.run_once() == 0
            status = forged.anchors.status()
            assert status.cosignatures_outstanding == 2
            for w in witnesses:
                error = status.errors[w.url]
                assert ("422" in error) if label == "larger" else ("larger than our" in error)
        finally:
            forged.close()
    for w in witnesses:
        kept = [json.loads(line) for line in w.refusals()]
        reasons = [k["reason"] for k in kept]
        assert any("consistency proof does not verify" in r for r in reasons), reasons
        assert any("smaller tree after a larger one" in r for r in reasons), reasons
        assert all(k["held_size"] == held for k in kept)
        assert all("\n\n" in k["request"] and "—" in k["request"] for k in kept)
