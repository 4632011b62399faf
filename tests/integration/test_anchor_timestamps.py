"""RFC 3161 tokens for every signed checkpoint, from a real TSA (OpenSSL's, tests/local_tsa.py):
kept as the TSA sent them (OpenSSL verifies them as they are), outstanding while the TSA is
down and filled in once it is back, and refused for another note or an untrusted CA."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.evidence.checkpoint import parse_signed_note
from infrastructure.bootstrap import Services, build_services
from infrastructure.evidence.timestamping import TimestampError, load_cas, verify_token
from infrastructure.settings import Settings
from tests.builders import SELLER, a_draft, by
from tests.local_tsa import LocalTsa, local_tsa, make_ca


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    with local_tsa(tmp_path / "tsa") as running:
        yield running


@pytest.fixture
def stamped(settings: Settings, tsa: LocalTsa) -> Iterator[Services]:
    svc = build_services(
        settings.model_copy(
            update={
                "tsa_urls": tsa.url,
                "tsa_ca_file": tsa.ca_pem,
                "anchor_backoff_seconds": 0.05,
                "outbound_allow": "127.0.0.1/32",  # the test TSA is on loopback
            }
        )
    )
    yield svc
    svc.close()


def _checkpoint(services: Services, invoices: int = 2) -> dict[str, object]:
    for _ in range(invoices):
        services.ledger.issue_invoice(SELLER, a_draft(), by())
    services.bring_up_to_date("seal")
    row = services.merkle.checkpoint_now()
    assert row is not None
    return row


def test_a_checkpoint_gets_a_token_that_openssl_ts_verify_accepts(
    stamped: Services, tsa: LocalTsa, tmp_path: Path
) -> None:
    row = _checkpoint(stamped)
    assert stamped.anchors.status().tokens_outstanding == 1
    assert stamped.anchors.run_once() == 1
    assert stamped.anchors.status().tokens_outstanding == 0
    [token] = stamped.anchors.anchors(int(row["tree_size"]))["timestamps"]
    assert token["tsa_url"] == tsa.url
    body, _ = parse_signed_note(str(row["note"]))
    (tmp_path / "token.tsr").write_bytes(base64.b64decode(token["token"]))
    (tmp_path / "body.txt").write_bytes(body.encode())
    checked = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            "token.tsr",
            "-data",
            "body.txt",
            "-CAfile",
            str(tsa.ca_pem),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "Verification: OK" in checked.stdout
    # and the same token over another note's body is refused by OpenSSL too
    (tmp_path / "other.txt").write_bytes(body.replace("\n", "\n\n", 1).encode())
    other = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            "token.tsr",
            "-data",
            "other.txt",
            "-CAfile",
            str(tsa.ca_pem),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode != 0
    gen_time = verify_token(
        base64.b64decode(token["token"]), body, load_cas(tsa.ca_pem.read_bytes())
    )
    assert gen_time == token["gen_time"]


def test_a_tsa_down_for_a_while_leaves_tokens_outstanding_then_fills_them(
    stamped: Services, tsa: LocalTsa
) -> None:
    tsa.down = True
    first = _checkpoint(stamped)
    assert stamped.anchors.run_once() == 0
    second = _checkpoint(stamped)
    assert stamped.anchors.run_once() == 0  # backing off, or refused again
    status = stamped.anchors.status()
    assert status.tokens_outstanding == 2
    assert "HTTP 503" in status.errors[tsa.url]
    assert tsa.refused >= 1
    tsa.down = False
    deadline = time.monotonic() + 10
    while stamped.anchors.status().tokens_outstanding and time.monotonic() < deadline:
        stamped.anchors.run_once()
        time.sleep(0.05)
    status = stamped.anchors.status()
    assert status.tokens_outstanding == 0 and not status.errors
    for row in (first, second):
        assert len(stamped.anchors.anchors(int(row["tree_size"]))["timestamps"]) == 1


def test_a_token_for_another_note_or_from_an_untrusted_ca_fails(
    stamped: Services, tsa: LocalTsa, tmp_path: Path
) -> None:
    row = _checkpoint(stamped)
    stamped.anchors.run_once()
    [token] = stamped.anchors.anchors(int(row["tree_size"]))["timestamps"]
    der = base64.b64decode(token["token"])
    body, _ = parse_signed_note(str(row["note"]))
    cas = load_cas(tsa.ca_pem.read_bytes())
    verify_token(der, body, cas)
    with pytest.raises(TimestampError, match="Mismatch between messages"):
        verify_token(der, body.replace("\n", " \n", 1), cas)
    make_ca(tmp_path / "stranger", "stranger")
    stranger = [x509.load_pem_x509_certificate((tmp_path / "stranger" / "ca.pem").read_bytes())]
    with pytest.raises(TimestampError):
        verify_token(der, body, stranger)


def test_the_anchor_tables_refuse_update_and_delete(stamped: Services) -> None:
    """(Row triggers: the cosignature table's are checked with rows, in the witness tests.)"""
    _checkpoint(stamped)
    stamped.anchors.run_once()
    for statement in (
        "UPDATE checkpoint_timestamps SET token = 'x'",
        "DELETE FROM checkpoint_timestamps",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with stamped.write_engine.begin() as conn:
                conn.execute(text(statement))


def test_outstanding_tokens_on_readyz_metrics_and_ledger_status(
    settings: Settings, tsa: LocalTsa
) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app
    from tests.test_cli import fapiao

    configured = settings.model_copy(
        update={"tsa_urls": tsa.url, "tsa_ca_file": tsa.ca_pem, "outbound_allow": "127.0.0.1/32"}
    )
    svc = build_services(configured)
    try:
        tsa.down = True
        _checkpoint(svc)
        with TestClient(create_app(services=svc)) as client:
            ready = client.get("/readyz").json()
            assert ready["anchors"]["timestamp_tokens_outstanding"] == 1
            metrics = client.get("/metrics").text
            assert "fapiao_checkpoint_timestamp_tokens_outstanding 1.0" in metrics
    finally:
        svc.close()
    env = {
        "FAPIAO_TSA_URLS": tsa.url,
        "FAPIAO_TSA_CA_FILE": str(tsa.ca_pem),
        "FAPIAO_OUTBOUND_ALLOW": "127.0.0.1/32",
    }
    r = fapiao(configured, "ledger", "status", env=env)
    assert r.returncode == 0, r.stderr
    assert "timestamp tokens outstanding: 1" in r.stdout
    tsa.down = False
    r = fapiao(configured, "ledger", "anchor", env=env)
    assert r.returncode == 0, r.stderr
    assert "timestamp tokens outstanding: 0" in r.stdout


def test_the_tsa_client_goes_through_the_outbound_guard(settings: Settings, tsa: LocalTsa) -> None:
    """Without FAPIAO_OUTBOUND_ALLOW a TSA on loopback is refused, and the token stays
    outstanding with the guard's reason."""
    svc = build_services(
        settings.model_copy(update={"tsa_urls": tsa.url, "tsa_ca_file": tsa.ca_pem})
    )
    try:
        _checkpoint(svc)
        assert svc.anchors.run_once() == 0
        status = svc.anchors.status()
        assert status.tokens_outstanding == 1
        assert "internal or reserved address" in status.errors[tsa.url]
        assert tsa.answered == 0 and tsa.refused == 0
    finally:
        svc.close()


def test_anchoring_waits_while_the_sealer_catches_up(settings: Settings, tsa: LocalTsa) -> None:
    svc = build_services(
        settings.model_copy(
            update={
                "tsa_urls": tsa.url,
                "tsa_ca_file": tsa.ca_pem,
                "outbound_allow": "127.0.0.1/32",
                "anchor_yield_events": 1,
            }
        )
    )
    try:
        _checkpoint(svc)
        for _ in range(2):
            svc.ledger.issue_invoice(SELLER, a_draft(), by())  # sealer now behind by 2
        assert svc.anchor_round() == -1 and tsa.answered == 0
        svc.bring_up_to_date("seal")
        assert svc.anchor_round() == 1 and tsa.answered == 1
    finally:
        svc.close()


def test_a_tsa_sending_an_unsorted_chain_is_named_plainly_and_nothing_kept(
    settings: Settings, tmp_path: Path
) -> None:
    """OpenSSL's TSA with `certs = ca.pem` sends the chain as a SET OF not in DER order:
    `openssl ts -verify` accepts it, rfc3161-client (strict DER) cannot read it, and no
    maintained release reads it; re-encoding is not an option (tokens are kept as sent). So
    the reason is said plainly on /readyz and `fapiao ledger status`, and the token stays
    outstanding."""
    from fastapi.testclient import TestClient

    from api.http.app import create_app
    from infrastructure.evidence.timestamping import UNSORTED_CERTIFICATES
    from tests.test_cli import fapiao

    with local_tsa(tmp_path / "chained", chain=True) as tsa:
        configured = settings.model_copy(
            update={
                "tsa_urls": tsa.url,
                "tsa_ca_file": tsa.ca_pem,
                "outbound_allow": "127.0.0.1/32",
            }
        )
        svc = build_services(configured)
        try:
            row = _checkpoint(svc)
            assert svc.anchors.run_once() == 0
            status = svc.anchors.status()
            assert status.tokens_outstanding == 1
            assert UNSORTED_CERTIFICATES in status.errors[tsa.url]
            assert svc.anchors.anchors(int(row["tree_size"]))["timestamps"] == []
            with TestClient(create_app(services=svc)) as client:
                errors = client.get("/readyz").json()["anchors"]["errors"]
            assert "out of DER order" in errors[tsa.url]
            assert "ParseError" not in errors[tsa.url]
        finally:
            svc.close()
        env = {
            "FAPIAO_TSA_URLS": tsa.url,
            "FAPIAO_TSA_CA_FILE": str(tsa.ca_pem),
            "FAPIAO_OUTBOUND_ALLOW": "127.0.0.1/32",
        }
        # The errors are the running process's (a fresh `ledger status` has tried nothing);
        # `ledger anchor` tries once and says why.
        r = fapiao(configured, "ledger", "anchor", env=env)
        assert r.returncode == 0, r.stderr
        assert "timestamp tokens outstanding: 1" in r.stdout
        assert "out of DER order" in r.stderr and "no chain or a DER-sorted one" in r.stderr
        assert "ParseError" not in r.stderr
        # The same answer handed to the offline check is named the same way.
        body, _ = parse_signed_note(str(row["note"]))
        from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

        query = (
            TimestampRequestBuilder(cert_req=True)
            .data(body.encode())
            .hash_algorithm(HashAlgorithm.SHA256)
            .build()
        )
        answer = tsa.reply(query.as_bytes())
        with pytest.raises(TimestampError, match="out of DER order"):
            verify_token(answer, body, load_cas(tsa.ca_pem.read_bytes()))
        # OpenSSL itself accepts the token as sent.
        (tmp_path / "r.tsr").write_bytes(answer)
        (tmp_path / "body.txt").write_text(body)
        ok = subprocess.run(
            ["openssl", "ts", "-verify", "-in", str(tmp_path / "r.tsr"), "-data",
             str(tmp_path / "body.txt"), "-CAfile", str(tsa.ca_pem)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stderr
