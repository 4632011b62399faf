"""Checkpoints and proofs over HTTP: readable by auditors, compliance and admins; inclusion
proofs and sealed positions only for the caller's own tenant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import SELLER, issue_json
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
    assert api.get("/v1/ledger/inclusion", api.auditor, position=99).status_code == 404
    assert api.get("/v1/checkpoints/latest").status_code == 403  # a clerk
    compliance = api.key(SELLER, "compliance")
    assert api.get("/v1/checkpoints/latest", compliance).status_code == 200
    by_size = api.get("/v1/checkpoints/5", api.auditor)
    assert by_size.status_code == 200 and by_size.json()["note"] == cp["note"]
    assert cp["heads_count"] == 5 and len(cp["heads_root"]) == 64
    assert api.get("/v1/checkpoints/4", api.auditor).status_code == 404


def test_a_tenant_gets_proofs_only_for_its_own_positions(api: Api) -> None:
    mine = api.issue()
    theirs = api.post("/v1/invoices", issue_json(), api.other).json()
    api.services.bring_up_to_date("seal")
    api.services.merkle.checkpoint_now()
    listed = api.get("/v1/ledger/leaves", api.auditor).json()
    assert [(r["position"], r["stream_id"]) for r in listed] == [
        (mine["position"], mine["invoice_id"])
    ]
    assert (
        api.get("/v1/ledger/inclusion", api.auditor, position=mine["position"]).status_code == 200
    )
    for position in (theirs["position"], 10_000):
        r = api.get("/v1/ledger/inclusion", api.auditor, position=position)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    other = api.get("/v1/ledger/leaves", api.other).json()
    assert [r["position"] for r in other] == [theirs["position"]]
