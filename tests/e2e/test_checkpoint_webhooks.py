"""Checkpoints reach those who hold us to them: every signed checkpoint goes to every tenant
subscription as `checkpoint.signed` (note with cosignatures, timestamp tokens), is listed by
`GET /v1/checkpoints?since=`, and a checkpoint a tenant kept catches a rewritten log."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.http.app import create_app
from infrastructure.bootstrap import build_services, event_catalog
from infrastructure.evidence.bundle_verifier import read_key_file, verify_bundle
from infrastructure.settings import Settings
from tests.builders import OTHER_TENANT, SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_evidence import export
from tests.e2e.test_webhooks import Receiver
from tests.local_tsa import LocalTsa, local_tsa

SEED = secrets.token_bytes(32).hex()


def _configured(settings: Settings, tsa: LocalTsa) -> Settings:
    return settings.model_copy(
        update={
            "signing_key": SecretStr(SEED),
            "tsa_urls": tsa.url,
            "tsa_ca_file": tsa.ca_pem,
            "outbound_allow": "127.0.0.1/32",  # TSA and receivers on loopback
        }
    )


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path / "tsa") as running:
        yield running


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    a, b = Receiver(), Receiver()
    yield a, b
    a.close()
    b.close()


def _checkpoint(api: Api) -> int:
    api.issue()
    api.services.bring_up_to_date("seal")
    row = api.services.merkle.checkpoint_now()
    assert row is not None
    return int(row["tree_size"])


def test_tenants_receive_every_checkpoint_and_catch_a_rewritten_log(
    settings: Settings,
    sqlite_template: Path,
    tmp_path: Path,
    tsa: LocalTsa,
    receivers: tuple[Receiver, Receiver],
) -> None:
    services = build_services(_configured(settings, tsa))
    try:
        with TestClient(create_app(services=services)) as client:
            api = Api(client, services)
            for tenant, receiver in zip((SELLER, OTHER_TENANT), receivers, strict=True):
                services.webhooks.subscribe(tenant, receiver.url, ["invoice.missing"])
            sizes = []
            for _ in range(3):
                sizes.append(_checkpoint(api))
                services.anchors.run_once()
            services.anchors.run_once()
            assert services.webhooks.deliver_due() == 6
            for receiver in receivers:
                # delivered concurrently, in no order (README): a tenant orders them by size
                got = sorted(
                    (json.loads(r["body"]) for r in receiver.received),
                    key=lambda g: g["data"]["tree_size"],
                )
                assert [g["event"] for g in got] == ["checkpoint.signed"] * 3
                assert [g["data"]["tree_size"] for g in got] == sizes
                for g in got:
                    assert len(g["data"]["timestamps"]) == 1
                    assert g["data"]["note"].startswith(services.merkle.signer.origin + "\n")
            services.anchors.run_once()
            assert services.webhooks.deliver_due() == 0  # each checkpoint once

            listed = api.get("/v1/checkpoints", api.auditor, since=sizes[0]).json()
            assert [c["tree_size"] for c in listed] == sizes[1:]
            assert listed[-1]["note"] == got[-1]["data"]["note"]
            assert api.get("/v1/checkpoints", api.auditor, since=-1).status_code == 422
            assert api.get("/v1/checkpoints", api.clerk).status_code == 403
            keys = read_key_file(
                "\n".join(k["vkey"] for k in client.get("/v1/checkpoints/keys").json())
            )
        held = got[-1]["data"]["note"]  # a tenant's copy of the latest (got is the second's)
        held_size = sizes[-1]
    finally:
        services.close()

    # The operator rebuilds the log with other events and re-signs it with the same key.
    path = tmp_path / "rewritten.db"
    shutil.copy(sqlite_template, path)
    forged = build_services(
        _configured(
            Settings(database_url=f"sqlite:///{path}", environment="test", data_dir=tmp_path / "f"),
            tsa,
        )
    )
    try:
        with TestClient(create_app(services=forged)) as client:
            api = Api(client, forged)
            for _ in range(5):
                inv = api.issue()
            forged.bring_up_to_date("seal")
            forged.merkle.checkpoint_now()
            bundle = export(api, [inv["invoice_id"]], tmp_path, "forged.zip")
            # asked to prove it extends the tenant's checkpoint, the rewritten log cannot
            asked = api.client.post(
                "/v1/evidence-bundles",
                json={"invoices": [inv["invoice_id"]], "since_checkpoint": held},
                headers=api.key(SELLER, "compliance"),
            )
            assert asked.status_code == 409
            assert "you hold is a fork" in asked.json()["detail"]
    finally:
        forged.close()
    alone = verify_bundle(bundle, event_catalog(), keys)
    assert alone.failures == []  # the operator's own signature alone cannot tell
    caught = verify_bundle(bundle, event_catalog(), keys, held)
    assert caught.failures, "the tenant-held checkpoint must catch the rewrite"
    assert caught.failures == [
        f"data/consistency/{held_size}-{alone.tree_size}.json: missing; nothing shows this log "
        f"extends the checkpoint you hold (size {held_size}); export with --since-checkpoint"
    ]


def test_key_rotation_statements_let_a_verifier_follow_the_log_to_its_new_key(
    settings: Settings, tmp_path: Path
) -> None:
    services = build_services(settings)
    try:
        with TestClient(create_app(services=services)) as client:
            api = Api(client, services)
            services.merkle.signer.current()  # the first key (made on first use here)
            first = client.get("/v1/checkpoints/keys").json()  # the key a verifier trusted
            assert len(first) == 1 and first[0]["rotation"] is None
            services.merkle.signer.rotate()
            services.merkle.signer.rotate()  # two rotations: old -> middle -> new
            published = client.get("/v1/checkpoints/keys").json()
            assert [k["rotation"] is not None for k in published] == [False, True, True]
            assert published[1]["rotation"].startswith("fapiao-key-rotation/v1\n")
            assert f"new {published[2]['vkey']}\n" in published[2]["rotation"]
            inv = api.issue()
            bundle = export(api, [inv["invoice_id"]], tmp_path, "rotated.zip")
    finally:
        services.close()
    old = tmp_path / "old.vkey"
    old.write_text(first[0]["vkey"] + "\n")
    rotations = tmp_path / "keys.json"
    rotations.write_text(json.dumps(published))
    nowhere = "sqlite:////nonexistent/ledger.db"
    from tests.test_cli import fapiao

    alone = fapiao(nowhere, "evidence", "verify", str(bundle), "--public-key", str(old))
    assert alone.returncode == 1 and "no valid signature by a key you trust" in alone.stderr
    followed = fapiao(
        nowhere,
        "evidence",
        "verify",
        str(bundle),
        "--public-key",
        str(old),
        "--key-rotations",
        str(rotations),
    )
    assert followed.returncode == 0, followed.stderr
    # a statement whose new key was swapped for another's no longer verifies
    forged = json.loads(rotations.read_text())
    stranger = forged[0]["vkey"]
    forged[2]["rotation"] = forged[2]["rotation"].replace(
        f"new {forged[2]['vkey']}", f"new {stranger}"
    )
    rotations.write_text(json.dumps(forged))
    refused = fapiao(
        nowhere,
        "evidence",
        "verify",
        str(bundle),
        "--public-key",
        str(old),
        "--key-rotations",
        str(rotations),
    )
    assert refused.returncode == 2
    assert "rotation statement 2: not signed by the key it names as old" in refused.stderr
