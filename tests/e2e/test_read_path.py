"""GET one invoice, the hot read (issue 15): keys from a bounded in-process cache, one query per
GET, the body written by orjson exactly as InvoiceOut's JSON, the guarantees kept (tenant
isolation, 401 and 422 as problem+json, the request id, the read-from header). Both stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.http.app import create_app
from api.http.bounded import ConsistentAfter
from api.http.schemas import InvoiceOut
from infrastructure.api_keys import ApiKeyStore
from infrastructure.bootstrap import Services
from infrastructure.settings import Settings
from tests.builders import OTHER_TENANT, SELLER, issue_json


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_processes(services: Services, seconds: float) -> tuple[ApiKeyStore, ApiKeyStore, Clock]:
    """Two key stores on one database, as two server processes have."""
    clock = Clock()
    here = ApiKeyStore(services.engine, services.write_engine, seconds, clock)
    there = ApiKeyStore(services.engine, services.write_engine, seconds, clock)
    return here, there, clock


def test_a_key_revoked_elsewhere_is_refused_within_the_cache_bound(services: Services) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    here, there, clock = two_processes(services, 5.0)
    key_id, secret = here.create_key(SELLER, "clerk")
    assert here.authenticate(secret) is not None  # read once, now cached
    there.revoke(key_id)
    clock.now += 4.9
    cached = here.authenticate(secret)
    assert cached is not None and cached.key_id == key_id  # within the bound: still trusted
    clock.now += 0.2
    assert here.authenticate(secret) is None  # past 5 s: read again, refused
    assert there.authenticate(secret) is None


def test_a_key_revoked_in_this_process_is_refused_at_once(services: Services) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    here, _, _ = two_processes(services, 5.0)
    key_id, secret = here.create_key(SELLER, "clerk")
    assert here.authenticate(secret) is not None
    here.revoke(key_id)
    assert here.authenticate(secret) is None
    assert here.authenticate_cached(secret) == (True, None)


def test_cache_off_reads_the_key_table_every_time(services: Services) -> None:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    here, there, _ = two_processes(services, 0.0)
    key_id, secret = here.create_key(SELLER, "clerk")
    assert here.authenticate(secret) is not None
    assert here.authenticate_cached(secret) == (False, None)  # nothing kept
    there.revoke(key_id)
    assert here.authenticate(secret) is None


def test_the_cache_is_the_setting_and_defaults_to_five_seconds(services: Services) -> None:
    assert Settings.model_fields["key_cache_seconds"].default == 5.0
    assert services.keys.cache_seconds == services.settings.key_cache_seconds


def test_guessed_keys_cannot_grow_the_cache_without_bound(services: Services) -> None:
    import infrastructure.api_keys as api_keys

    here, _, _ = two_processes(services, 5.0)
    limit = api_keys.CACHE_ENTRIES
    api_keys.CACHE_ENTRIES = 50
    try:
        for n in range(120):
            assert here.authenticate(f"fpl_guess_{n}") is None
        assert len(here._cache) <= 50
    finally:
        api_keys.CACHE_ENTRIES = limit


class Counted:
    """Every SQL query the service's engines run (not transaction control: SQLite's read
    engine opens its own BEGIN, in-process, not a round trip), and the event-loop reader's."""

    def __init__(self, services: Services) -> None:
        self._statements: list[str] = []
        self.engines = {services.engine, services.write_engine}
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._seen)
        self.services = services
        self._fast_from = self._fast()

    def _fast(self) -> int:  # the event-loop read's statements (PostgreSQL)
        fast = self.services.fast_reader
        return 0 if fast is None else fast.queries

    @property
    def statements(self) -> list[str]:
        return self._statements + ["SELECT … FROM invoice_status (event loop)"] * (
            self._fast() - self._fast_from
        )

    def clear(self) -> None:
        self._statements.clear()
        self._fast_from = self._fast()

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            self._statements.append(statement)

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._seen)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services)) as c:
        yield c


def _issued(client: TestClient, services: Services) -> tuple[dict[str, Any], dict[str, str]]:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    headers = {"Authorization": f"Bearer {services.keys.create_key(SELLER, 'clerk')[1]}"}
    body = issue_json()
    made = client.post("/v1/invoices", json=body, headers=headers)
    assert made.status_code == 201, made.text
    services.bring_up_to_date("invoice_status")
    return {**made.json(), "number": body["number"]}, headers


def test_one_get_is_one_query_by_id_and_by_key(client: TestClient, services: Services) -> None:
    made, headers = _issued(client, services)
    counted = Counted(services)
    try:
        for ref in (made["invoice_id"], made["number"]):
            counted.clear()
            r = client.get(f"/v1/invoices/{ref}", headers=headers)
            assert r.status_code == 200, r.text
            assert len(counted.statements) == 1, counted.statements
            assert "invoice_status" in counted.statements[0]
    finally:
        counted.close()


def test_a_cold_key_costs_one_lookup_then_none(services: Services) -> None:
    with TestClient(create_app(services=services)) as client:
        made, headers = _issued(client, services)
        services.keys._cache.clear()
        counted = Counted(services)
        try:
            assert client.get(f"/v1/invoices/{made['invoice_id']}", headers=headers).is_success
            assert len(counted.statements) == 2  # the key, then the row
            counted.clear()
            assert client.get(f"/v1/invoices/{made['invoice_id']}", headers=headers).is_success
            assert len(counted.statements) == 1
        finally:
            counted.close()


def test_the_body_is_orjson_of_invoice_out(client: TestClient, services: Services) -> None:
    made, headers = _issued(client, services)
    r = client.get(f"/v1/invoices/{made['invoice_id']}", headers=headers)
    assert r.headers["content-type"] == "application/json"
    row = services.reader.get(SELLER, services.ledger.resolve_invoice_id(SELLER, made["number"]))
    assert row is not None
    model = InvoiceOut.from_row(row)
    assert r.content == orjson.dumps(model.model_dump(mode="json"))
    assert InvoiceOut.model_validate_json(r.content) == model
    assert r.headers["x-fapiao-read-from"] == "primary"
    assert len(r.headers["x-request-id"]) == 32


def test_another_tenants_invoice_is_not_found(client: TestClient, services: Services) -> None:
    made, _ = _issued(client, services)
    services.keys.ensure_tenant(OTHER_TENANT, "南通")
    other = {"Authorization": f"Bearer {services.keys.create_key(OTHER_TENANT, 'clerk')[1]}"}
    for ref in (made["invoice_id"], made["number"], "not-an-invoice"):
        r = client.get(f"/v1/invoices/{ref}", headers=other)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert ref in r.json()["detail"]


def test_a_long_unknown_ref_is_not_echoed_whole(client: TestClient, services: Services) -> None:
    _, headers = _issued(client, services)
    ref = "9" * 3000
    r = client.get(f"/v1/invoices/{ref}", headers=headers)
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert detail == f"invoice {'9' * 48}... (3,000 characters) not found"
    key = "0" * 64  # as long as is echoed whole: every key and uuid is shorter
    r = client.get(f"/v1/invoices/{key}", headers=headers)
    assert r.status_code == 404 and r.json()["detail"] == f"invoice {key} not found"


def test_refusals_are_the_dependency_routes_refusals(
    client: TestClient, services: Services
) -> None:
    """The hot route reads its headers itself; it answers as the routes that resolve them."""
    made, headers = _issued(client, services)
    one = f"/v1/invoices/{made['invoice_id']}"
    listed = "/v1/invoices"
    for sent in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer fpl_x_nope"}):
        a, b = client.get(one, headers=sent), client.get(listed, headers=sent)
        assert a.status_code == b.status_code == 401
        assert a.json()["detail"] == b.json()["detail"]
    long_name = {**headers, "X-Actor-User": "x" * 101}
    a, b = client.get(one, headers=long_name), client.get(listed, headers=long_name)
    assert a.status_code == b.status_code == 422
    assert a.json()["errors"] == b.json()["errors"]
    assert client.get(f"{one}?consistent_after=-1", headers=headers).status_code == 422


def test_the_openapi_still_documents_the_key_and_the_actor_header(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/invoices/{ref}"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"ref", "consistent_after", "x-actor-user"}
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/InvoiceOut")


@pytest.mark.parametrize(
    "sent",
    ["-1", "abc", "1.5", "9007199254740993", "", "0", " 3", "1e3", "x&consistent_after=0"],
)
def test_consistent_after_is_read_as_fastapi_reads_it(
    client: TestClient, services: Services, sent: str
) -> None:
    """The hot route reads `consistent_after` itself; its answers are the list route's, whose
    parameter FastAPI resolves."""
    made, headers = _issued(client, services)
    one = client.get(f"/v1/invoices/{made['invoice_id']}?consistent_after={sent}", headers=headers)
    listed = client.get(f"/v1/invoices?consistent_after={sent}", headers=headers)
    assert one.status_code == listed.status_code, (one.text, listed.text)
    if listed.status_code == 422:
        assert one.json()["errors"] == listed.json()["errors"]
        assert one.json()["detail"] == listed.json()["detail"]
    else:
        assert one.status_code == 200, one.text


def test_the_hot_routes_parameters_are_documented_as_fastapi_would(client: TestClient) -> None:
    """The hot route reads `ref` and `consistent_after` itself and documents them by hand:
    the same entries FastAPI generates for the plain signature."""
    plain = FastAPI()

    @plain.get("/v1/invoices/{ref}")
    def one(ref: str, consistent_after: ConsistentAfter = None) -> None: ...

    want = plain.openapi()["paths"]["/v1/invoices/{ref}"]["get"]["parameters"]
    got = client.get("/openapi.json").json()["paths"]["/v1/invoices/{ref}"]["get"]["parameters"]
    assert got[: len(want)] == want
    assert [p["name"] for p in got[len(want) :]] == ["x-actor-user"]
