"""Bundles carry their checkpoint's anchors, and `fapiao evidence verify --tsa-ca FILE
--witness-key VKEY --min-witnesses N` checks them: with a real TSA (OpenSSL's) and two
`fapiao witness serve` processes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.http.app import create_app
from domain.evidence.cosignature import parse_cosigner_vkey
from infrastructure.bootstrap import Services, build_services, event_catalog
from infrastructure.evidence.bundle_verifier import AnchorPolicy, read_key_file, verify_bundle
from infrastructure.evidence.timestamping import load_cas
from infrastructure.settings import Settings
from tests.e2e.test_api import Api
from tests.e2e.test_evidence import export, rebag, rezip, unpack
from tests.local_tsa import LocalTsa, local_tsa, make_ca
from tests.test_cli import fapiao
from tests.witness_procs import WitnessProc, witness_process

NOWHERE = "sqlite:////nonexistent/ledger.db"


@pytest.fixture
def anchored(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[Api, LocalTsa, list[WitnessProc]]]:
    seed = secrets.token_bytes(32).hex()
    keyed = settings.model_copy(update={"signing_key": SecretStr(seed)})
    probe = build_services(keyed)
    try:
        vkey = next(k.vkey for k in probe.merkle.signer.public_keys() if k.name.endswith("/env"))
        origin = probe.merkle.signer.origin
    finally:
        probe.close()
    with ExitStack() as stack:
        tsa = stack.enter_context(local_tsa(tmp_path / "tsa"))
        witnesses = [
            stack.enter_context(
                witness_process(tmp_path / f"w{i}", f"audit{i}.example/w", origin, [vkey])
            )
            for i in (1, 2)
        ]
        services: Services = build_services(
            keyed.model_copy(
                update={
                    "tsa_urls": tsa.url,
                    "tsa_ca_file": tsa.ca_pem,
                    "witnesses": {w.url: w.vkey for w in witnesses},
                    "anchor_backoff_seconds": 0.01,
                    "outbound_allow": "127.0.0.1/32",  # TSA and witnesses on loopback
                }
            )
        )
        stack.callback(services.close)
        client = stack.enter_context(TestClient(create_app(services=services)))
        yield Api(client, services), tsa, witnesses


def _sealed_and_anchored(api: Api) -> Any:
    inv = api.issue()
    api.services.bring_up_to_date("seal")
    api.services.merkle.checkpoint_now()
    api.services.anchors.run_once()
    return inv


def _verify(bundle: Path, keys: Path, *extra: str) -> Any:
    return fapiao(NOWHERE, "evidence", "verify", str(bundle), "--public-key", str(keys), *extra)


def test_a_bundle_carries_its_anchors_and_the_verifier_checks_them(
    anchored: tuple[Api, LocalTsa, list[WitnessProc]], tmp_path: Path
) -> None:
    api, tsa, (w1, w2) = anchored
    keys = tmp_path / "log.vkeys"
    keys.write_text("\n".join(k["vkey"] for k in api.client.get("/v1/checkpoints/keys").json()))
    witnessed = ["--witness-key", w1.vkey, "--witness-key", w2.vkey]

    inv = _sealed_and_anchored(api)
    bundle = export(api, [inv["invoice_id"]], tmp_path, "anchored.zip")
    ok = _verify(bundle, keys, "--tsa-ca", str(tsa.ca_pem), *witnessed, "--min-witnesses", "2")
    assert ok.returncode == 0, ok.stderr
    assert "timestamp timestamps/1.tsr: TSA time" in ok.stdout
    assert f"cosigned by {w1.name}" in ok.stdout and f"cosigned by {w2.name}" in ok.stdout
    assert "the checkpoint provably existed by" in ok.stdout
    trusted = read_key_file(keys.read_text())
    plain = verify_bundle(bundle, event_catalog(), trusted)
    assert plain.failures == [] and "timestamps" not in plain.checks  # not asked: not run
    assert "witnesses" not in plain.checks
    policy = AnchorPolicy(load_cas(tsa.ca_pem.read_bytes()), [parse_cosigner_vkey(w1.vkey)], 1)
    checked = verify_bundle(bundle, event_catalog(), trusted, None, policy)
    assert checked.checks["timestamps"] == [] and checked.checks["witnesses"] == []
    assert [n for n, _ in checked.timestamps] == ["timestamps/1.tsr"]
    assert [w for w, _ in checked.witnesses] == [w1.name]
    assert checked.earliest is not None and checked.earliest[0] == min(
        checked.timestamps[0][1], checked.witnesses[0][1]
    )

    # A token from a TSA whose CA the inspector does not trust fails.
    make_ca(tmp_path / "stranger", "stranger")
    stranger = _verify(bundle, keys, "--tsa-ca", str(tmp_path / "stranger" / "ca.pem"))
    assert stranger.returncode == 1
    assert "data/timestamps/1.tsr: the timestamp token does not verify" in stranger.stderr

    # The second witness goes offline: the next checkpoint has one cosignature, not the quorum.
    w2.stop()
    inv2 = _sealed_and_anchored(api)
    assert api.services.anchors.status().cosignatures_outstanding == 1
    short = export(api, [inv2["invoice_id"]], tmp_path, "short.zip")
    lacking = _verify(short, keys, *witnessed, "--min-witnesses", "2")
    assert lacking.returncode == 1
    assert "cosigned by 1 of the witnesses you trust, 2 required" in lacking.stderr
    assert _verify(short, keys, *witnessed, "--min-witnesses", "1").returncode == 0

    # A token for another note (the first checkpoint's, put in the second's bundle) fails.
    first = unpack(bundle, tmp_path / "first")
    second = unpack(short, tmp_path / "second")
    (second / "data" / "timestamps" / "1.tsr").write_bytes(
        (first / "data" / "timestamps" / "1.tsr").read_bytes()
    )
    rebag(second)
    swapped = _verify(rezip(second, tmp_path / "swapped.zip"), keys, "--tsa-ca", str(tsa.ca_pem))
    assert swapped.returncode == 1
    assert "Mismatch between messages" in swapped.stderr

    # A cosignature line altered by a byte fails by name.
    text = (first / "data" / "checkpoint.txt").read_text()
    line = next(x for x in text.splitlines() if w1.name in x)
    broken = line[:-20] + ("A" if line[-20] != "A" else "B") + line[-19:]
    (first / "data" / "checkpoint.txt").write_text(text.replace(line, broken))
    rebag(first)
    bad = _verify(rezip(first, tmp_path / "badcosig.zip"), keys, *witnessed)
    assert bad.returncode == 1
    assert f"the cosignature of {w1.name} does not verify" in bad.stderr
