"""X-Actor-User is honoured only from ERP keys (`--acts-for-users`); any other key is itself the
person, so one key with every review role cannot pass all stages by naming three users, and a
clerk cannot act as another user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api
from tests.e2e.test_reentry_api import a_missing_invoice, attach, events_of
from tests.integration.test_attachments import PDF


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def _key(api: Api, roles: str, erp: bool = False) -> str:
    return api.services.keys.create_key(SELLER, roles, acts_for_users=erp)[1]


def _as(secret: str, user: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if user:
        headers["X-Actor-User"] = user
    return headers


def _submitted_application(api: Api, headers: dict[str, str]) -> tuple[str, Any]:
    inv = a_missing_invoice(api)
    app = api.post(
        "/v1/reentry-applications", {"invoices": [inv["invoice_id"]], "reason": "x"}, headers
    )
    assert app.status_code == 201, app.text
    base = f"/v1/reentry-applications/{app.json()['application_id']}"
    fields = api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"remarks": "补录"}},
        headers=headers,
    )
    assert fields.status_code == 200, fields.text
    assert attach(api, app.json()["application_id"], PDF, "a.pdf", headers).status_code == 201  # type: ignore[attr-defined]
    assert api.post(f"{base}/submission", {}, headers).status_code == 200
    return base, app.json()


def test_a_key_with_every_role_is_one_person_whatever_users_it_names(api: Api) -> None:
    everything = _key(api, "clerk,reviewer,approver")
    base, app = _submitted_application(api, _as(everything, "alice"))
    review = api.post(f"{base}/review", {}, _as(everything, "bob"))
    assert review.status_code == 403, review.text
    assert review.json()["type"].endswith("separation-of-duties")
    actors = {e.actor for e in events_of(api.services, app["application_id"])}  # type: ignore[attr-defined]
    assert all("/user:" not in a for a in actors), actors  # the named users were not recorded


def test_a_clerk_cannot_withdraw_another_users_application(api: Api) -> None:
    erp = _key(api, "clerk", erp=True)
    base, _ = _submitted_application(api, _as(erp, "alice"))
    clerk = _key(api, "clerk")
    r = api.post(f"{base}/withdrawal", {"reason": "not mine"}, _as(clerk, "alice"))
    assert r.status_code in (403, 409), r.text
    assert api.get(base, _as(erp, "alice")).json()["status"] == "submitted"


def test_an_erp_key_names_each_person_and_separation_of_duties_counts_them(api: Api) -> None:
    erp = _key(api, "clerk,reviewer,approver", erp=True)
    base, app = _submitted_application(api, _as(erp, "alice"))
    assert api.post(f"{base}/review", {}, _as(erp, "alice")).status_code == 403  # alice again
    assert api.post(f"{base}/review", {}, _as(erp, "bob")).json()["status"] == "reviewed"
    assert api.post(f"{base}/approval", {}, _as(erp, "carol")).json()["status"] == "approved"
    actors = [e.actor for e in events_of(api.services, app["application_id"])]  # type: ignore[attr-defined]
    assert any(a.endswith("/user:bob") for a in actors)
    assert any(a.endswith("/user:carol") for a in actors)


def test_an_erp_key_must_name_a_printable_person(api: Api) -> None:
    erp = _key(api, "clerk", erp=True)
    r = api.client.get("/v1/invoices", headers={**_as(erp), "X-Actor-User": "a\tb\x7f"})
    assert r.status_code == 422
    assert "X-Actor-User" in r.text
