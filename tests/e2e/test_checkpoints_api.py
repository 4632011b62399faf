"""Checkpoints and proofs over HTTP: readable by auditors, compliance and admins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.integration.test_merkle_log import independent_inclusion, independent_note_check


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def test_latest_checkpoint_keys_and_proofs(api: Api) -> None:
    assert api.get("/v1/checkpoints/latest", api.auditor).status_code == 422  # none yet
    for _ in range(5):
        api.issue()
    api.services.bring_up_to_date("seal")
    api.services.merkle.checkpoint_now()
    cp = api.get("/v1/checkpoints/latest", api.auditor).json()
    (key,) = api.client.get("/v1/checkpoints/keys").json()
    size, root = independent_note_check(cp["note"], key["vkey"])
    assert size == cp["tree_size"] == 5 and root.hex() == cp["root_hash"]
    assert key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    proof = api.get("/v1/ledger/inclusion", api.auditor, position=3).json()
    assert independent_inclusion(
        proof["leaf_index"],
        size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["proof"]],
        root,
    )
    assert api.get("/v1/checkpoints/consistency", api.auditor, first=2, second=5).status_code == 200
    assert api.get("/v1/checkpoints/consistency", api.auditor, first=5, second=9).status_code == 422
    assert api.get("/v1/ledger/inclusion", api.auditor, position=99).status_code == 422
    assert api.get("/v1/checkpoints/latest").status_code == 403  # a clerk
    compliance = api.key(SELLER, "compliance")
    assert api.get("/v1/checkpoints/latest", compliance).status_code == 200
