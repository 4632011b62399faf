"""Every POST and PUT of the OpenAPI, sent ten times at once with one Idempotency-Key: one
effect (nothing saved after the first answer), the same answer to all ten, and the same key
with another body refused with 422. Routes are read from the OpenAPI so a new one without a
scenario here fails the test."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.http.app import create_app
from domain.idempotency import receipt_id
from infrastructure.bootstrap import Services
from infrastructure.store.tables import callback_secrets, webhook_subscriptions
from tests.builders import SELLER, a_number
from tests.e2e.test_api import Api
from tests.integration.test_attachments import JPEG, PDF, PNG

# On the default save path (group commit on); the plain path runs the ledger contract and the
# fencing suites (both_commit_paths), which keeps CI inside its time limit.

# Routes whose repeats are made safe by what they carry rather than by an Idempotency-Key.
EXEMPT = {
    "POST /v1/platform/callbacks": "signed by the platform; deduplicated by the body's digest",
    "POST /v1/reconciliations": "the same file (by SHA-256) answers with the first run",
    "POST /v1/evidence-bundles": "its own receipt with the bundle's bytes (test_evidence.py)",
    "POST /v1/webhooks/deliveries/{delivery_id}/redeliver": "sets one delivery pending again",
    "POST /v1/admin/projections/{name}/dead-letters/replay": "replays what is dead now; a "
    "repeat replays what is left (operators)",
}


@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    other_json: Any = None  # another body for the same key (422)


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services, run_workers=False)) as client:
        yield Api(client, services)


def missing_invoice(api: Api) -> dict[str, Any]:
    inv = api.issue()
    api.post(f"/v1/invoices/{inv['invoice_id']}/submissions", {})
    api.post(f"/v1/invoices/{inv['invoice_id']}/missing-reports", {"note": "not on platform"})
    return inv


def draft(api: Api) -> tuple[str, dict[str, Any]]:
    inv = missing_invoice(api)
    r = api.post("/v1/reentry-applications", {"invoices": [inv["invoice_key"]], "reason": "补录"})
    assert r.status_code == 201, r.text
    return f"/v1/reentry-applications/{r.json()['application_id']}", inv


def submitted(api: Api) -> str:
    base, inv = draft(api)
    api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"buyer_name": "杭州青禾贸易有限公司"}},
        headers=api.clerk,
    )
    api.client.post(f"{base}/attachments", files={"file": ("a.pdf", PDF)}, headers=api.clerk)
    assert api.post(f"{base}/submission", {}).status_code == 200
    return base


def complaint(api: Api) -> str:
    inv = missing_invoice(api)
    body = {"invoices": [inv["invoice_key"]], "channel": "hotline_12366", "demand": "请核查"}
    r = api.post("/v1/complaints", body)
    assert r.status_code == 201, r.text
    return f"/v1/complaints/{r.json()['complaint_id']}"


def paper(api: Api) -> dict[str, Any]:
    return api.issue(invoice_type="legacy_special_paper", code="1100261130", number=a_number()[-8:])


def lost_case(api: Api) -> str:
    body = {"invoice": paper(api)["invoice_key"], "lost_on": "2026-11-18", "place": "站"}
    r = api.post("/v1/lost-invoice-cases", {**body, "circumstances": "遗失"})
    assert r.status_code == 201, r.text
    return f"/v1/lost-invoice-cases/{r.json()['case_id']}"


def invoice_in(api: Api, *steps: str) -> str:
    inv = api.issue()
    for step in steps:
        assert api.post(f"/v1/invoices/{inv['invoice_id']}/{step}", {}).status_code == 200
    return f"/v1/invoices/{inv['invoice_id']}"


def red_reversal(api: Api) -> Call:
    base = invoice_in(api, "submissions")
    api.post(f"{base}/acknowledgements", {"platform_ref": "SW1"})
    body = {
        "scope": "full",
        "reason_code": "01",
        "confirmation_number": "11010826112001615708",
        "red_invoice_key": a_number(),
        "amount": "1130.00",
    }
    return Call("POST", f"{base}/red-reversals", body, other_json={**body, "reason_code": "02"})


def exchange() -> dict[str, str]:
    return {
        "at": "2026-11-20T10:05:00+08:00",
        "channel": "hotline_12366",
        "counterpart": "李女士",
        "said": "已登记",
    }


def window(api: Api) -> str:
    body = {"starts_at": "2026-11-28T22:00:00+08:00", "ends_at": "2026-11-29T06:00:00+08:00"}
    r = api.post("/v1/policy/maintenance-windows", body)
    assert r.status_code == 201, r.text
    return str(r.json()["maintenance_windows"][0]["window_id"])


SCENARIOS: dict[str, Callable[[Api], Call]] = {
    "POST /v1/invoices": lambda api: Call(
        "POST", "/v1/invoices", (b := issue_body()), None, None, {}, {**b, "number": a_number()}
    ),
    "POST /v1/invoice-batches": lambda api: Call(
        "POST",
        "/v1/invoice-batches",
        {"invoices": [issue_body()]},
        other_json={"invoices": [issue_body()]},
    ),
    "POST /v1/invoices/{ref}/submissions": lambda api: Call(
        "POST", f"{invoice_in(api)}/submissions", {"channel": "erp"}, other_json={"channel": "x"}
    ),
    "POST /v1/invoices/{ref}/submission-failures": lambda api: Call(
        "POST",
        f"{invoice_in(api, 'submissions')}/submission-failures",
        {"reason_code": "timeout"},
        other_json={"reason_code": "other"},
    ),
    "POST /v1/invoices/{ref}/acknowledgements": lambda api: Call(
        "POST",
        f"{invoice_in(api, 'submissions')}/acknowledgements",
        {"platform_ref": "SW1"},
        other_json={"platform_ref": "SW2"},
    ),
    "POST /v1/invoices/{ref}/rejections": lambda api: Call(
        "POST",
        f"{invoice_in(api, 'submissions')}/rejections",
        {"reason_code": "E0203", "message": "x"},
        other_json={"reason_code": "E0204"},
    ),
    "POST /v1/invoices/{ref}/missing-reports": lambda api: Call(
        "POST",
        f"{invoice_in(api, 'submissions')}/missing-reports",
        {"note": "a"},
        other_json={"note": "b"},
    ),
    "POST /v1/invoices/{ref}/voids": lambda api: Call(
        "POST",
        f"/v1/invoices/{paper(api)['invoice_id']}/voids",
        {"reason": "错"},
        other_json={"reason": "又错"},
    ),
    "POST /v1/invoices/{ref}/red-reversals": red_reversal,
    "PUT /v1/policy/ack-window": lambda api: Call(
        "PUT", "/v1/policy/ack-window", {"hours": 30}, other_json={"hours": 31}
    ),
    "POST /v1/policy/maintenance-windows": lambda api: Call(
        "POST",
        "/v1/policy/maintenance-windows",
        {"starts_at": "2026-11-28T22:00:00+08:00", "ends_at": "2026-11-29T06:00:00+08:00"},
        other_json={
            "starts_at": "2026-11-28T23:00:00+08:00",
            "ends_at": "2026-11-29T06:00:00+08:00",
        },
    ),
    "DELETE /v1/policy/maintenance-windows/{window_id}": lambda api: Call(
        "DELETE", f"/v1/policy/maintenance-windows/{window(api)}"
    ),
    "PUT /v1/policy/review-days": lambda api: Call(
        "PUT", "/v1/policy/review-days", {"days": 4}, other_json={"days": 5}
    ),
    "POST /v1/policy/closure-days": lambda api: Call(
        "POST",
        "/v1/policy/closure-days",
        {"days": ["2026-12-30"], "note": "停工"},
        other_json={"days": ["2026-12-31"], "note": "停工"},
    ),
    "POST /v1/policy/closure-days/withdrawal": lambda api: (
        closed_days(api)
        or Call(
            "POST",
            "/v1/policy/closure-days/withdrawal",
            {"days": ["2026-12-30"]},
            other_json={"days": ["2026-12-29"]},
        )
    ),
    "POST /v1/webhooks": lambda api: Call(
        "POST",
        "/v1/webhooks",
        {"url": "https://erp.example.cn/h", "events": ["invoice.missing"]},
        other_json={"url": "https://erp.example.cn/other", "events": ["invoice.missing"]},
    ),
    "POST /v1/reentry-applications": lambda api: Call(
        "POST",
        "/v1/reentry-applications",
        {"invoices": [(inv := missing_invoice(api))["invoice_key"]], "reason": "补录"},
        other_json={"invoices": [inv["invoice_key"]], "reason": "另一个理由"},
    ),
    "PUT /v1/reentry-applications/{application_id}/invoices/{invoice_ref}/fields": lambda api: (
        lambda base_inv: Call(
            "PUT",
            f"{base_inv[0]}/invoices/{base_inv[1]['invoice_id']}/fields",
            {"fields": {"buyer_name": "甲"}},
            other_json={"fields": {"buyer_name": "乙"}},
        )
    )(draft(api)),
    "PUT /v1/reentry-applications/{application_id}/reason": lambda api: Call(
        "PUT", f"{draft(api)[0]}/reason", {"reason": "新理由"}, other_json={"reason": "另"}
    ),
    "POST /v1/reentry-applications/{application_id}/attachments": lambda api: Call(
        "POST", f"{draft(api)[0]}/attachments", files={"file": ("a.pdf", PDF)}
    ),
    "POST /v1/reentry-applications/{application_id}/submission": lambda api: (
        lambda base: Call("POST", f"{base}/submission", {})
    )(submitted_draft(api)),
    "POST /v1/reentry-applications/{application_id}/review": lambda api: Call(
        "POST",
        f"{submitted(api)}/review",
        {"comment": "ok"},
        headers=api.key(SELLER, "reviewer"),
        other_json={"comment": "no"},
    ),
    "POST /v1/reentry-applications/{application_id}/approval": lambda api: (
        lambda base: Call(
            "POST",
            f"{base}/approval",
            {"comment": "同意"},
            headers=api.key(SELLER, "approver"),
            other_json={"comment": "不"},
        )
    )(reviewed(api)),
    "POST /v1/reentry-applications/{application_id}/return": lambda api: Call(
        "POST",
        f"{submitted(api)}/return",
        {"reasons": ["不清晰"]},
        headers=api.key(SELLER, "reviewer"),
        other_json={"reasons": ["别的"]},
    ),
    "POST /v1/reentry-applications/{application_id}/withdrawal": lambda api: Call(
        "POST", f"{draft(api)[0]}/withdrawal", {"reason": "不需要"}, other_json={"reason": "x"}
    ),
    "POST /v1/complaints": lambda api: Call(
        "POST",
        "/v1/complaints",
        {
            "invoices": [(inv := missing_invoice(api))["invoice_key"]],
            "channel": "hotline_12366",
            "demand": "请核查",
        },
        other_json={"invoices": [inv["invoice_key"]], "channel": "hotline_12366", "demand": "另"},
    ),
    "POST /v1/complaints/{complaint_id}/evidence": lambda api: Call(
        "POST", f"{complaint(api)}/evidence", files={"file": ("s.png", PNG)}
    ),
    "POST /v1/complaints/{complaint_id}/exchanges": lambda api: Call(
        "POST", f"{complaint(api)}/exchanges", exchange(), other_json={**exchange(), "said": "别"}
    ),
    "PUT /v1/complaints/{complaint_id}/reply-deadline": lambda api: Call(
        "PUT",
        f"{complaint(api)}/reply-deadline",
        {"due_on": "2026-11-30"},
        other_json={"due_on": "2026-12-01"},
    ),
    "POST /v1/complaints/{complaint_id}/escalations": lambda api: Call(
        "POST",
        f"{complaint(api)}/escalations",
        {"step": "written_appeal", "to": "区局", "due_on": "2026-12-10"},
        other_json={"step": "written_appeal", "to": "市局", "due_on": "2026-12-10"},
    ),
    "POST /v1/complaints/{complaint_id}/resolution": lambda api: Call(
        "POST",
        f"{complaint(api)}/resolution",
        {"outcome": "resolved", "text": "好"},
        other_json={"outcome": "resolved", "text": "坏"},
    ),
    "POST /v1/lost-invoice-cases": lambda api: Call(
        "POST",
        "/v1/lost-invoice-cases",
        (
            b := {
                "invoice": paper(api)["invoice_key"],
                "lost_on": "2026-11-18",
                "place": "站",
                "circumstances": "遗失",
            }
        ),
        other_json={**b, "place": "别处"},
    ),
    "POST /v1/lost-invoice-cases/{case_id}/copy-request": lambda api: Call(
        "POST",
        f"{lost_case(api)}/copy-request",
        {"issuer": "甲", "requested_on": "2026-11-19"},
        other_json={"issuer": "乙", "requested_on": "2026-11-19"},
    ),
    "POST /v1/lost-invoice-cases/{case_id}/certificate": lambda api: Call(
        "POST",
        f"{lost_case(api)}/certificate",
        {"certificate_number": "京税证 1", "issued_on": "2026-11-20"},
        other_json={"certificate_number": "京税证 2", "issued_on": "2026-11-20"},
    ),
    "POST /v1/lost-invoice-cases/{case_id}/attachments": lambda api: Call(
        "POST",
        f"{lost_case(api)}/attachments",
        files={"file": ("l.jpg", JPEG)},
        data={"step": "loss"},
    ),
    "POST /v1/lost-invoice-cases/{case_id}/closure": lambda api: (
        lambda base: Call(
            "POST",
            f"{base}/closure",
            {"outcome": "copy_obtained"},
            other_json={"outcome": "copy_obtained", "note": "别"},
        )
    )(copy_requested(api)),
}


def closed_days(api: Api) -> None:
    r = api.post("/v1/policy/closure-days", {"days": ["2026-12-29", "2026-12-30"], "note": "停"})
    assert r.status_code in (200, 201), r.text


def issue_body() -> dict[str, Any]:
    from tests.builders import issue_json

    return issue_json()


def submitted_draft(api: Api) -> str:
    base, inv = draft(api)
    api.client.put(
        f"{base}/invoices/{inv['invoice_id']}/fields",
        json={"fields": {"buyer_name": "杭州青禾贸易有限公司"}},
        headers=api.clerk,
    )
    api.client.post(f"{base}/attachments", files={"file": ("a.pdf", PDF)}, headers=api.clerk)
    return base


def reviewed(api: Api) -> str:
    base = submitted(api)
    assert api.post(f"{base}/review", {}, api.key(SELLER, "reviewer")).status_code == 200
    return base


def copy_requested(api: Api) -> str:
    base = lost_case(api)
    r = api.post(f"{base}/copy-request", {"issuer": "甲", "requested_on": "2026-11-19"})
    assert r.status_code == 200, r.text
    copy = {"file": ("c.pdf", PDF)}
    r = api.client.post(f"{base}/attachments", files=copy, data={"step": "copy"}, headers=api.clerk)
    assert r.status_code == 201, r.text
    return base


def last_position(api: Api) -> int:
    return int(api.services.ledger.recorder.max_notification_id() or 0)  # type: ignore[attr-defined]


def send(api: Api, call: Call, key: str, body: Any = None) -> Any:
    headers = {**(call.headers or api.clerk), "Idempotency-Key": key}
    kwargs: dict[str, Any] = {"headers": headers}
    if call.files is not None:
        kwargs.update(files=call.files, data=call.data)
    elif call.method != "DELETE":
        kwargs["json"] = call.json if body is None else body
    return api.client.request(call.method, call.path, **kwargs)


def shown(answer: Any) -> Any:
    """The answer without `replayed`, which says which of the ten came first."""
    body = answer.json() if answer.content else {}
    if isinstance(body, dict):
        body.pop("replayed", None)
        for item in body.get("results", []):
            item.pop("replayed", None)
    return body


def routes(api: Api) -> list[str]:
    spec = api.client.get("/openapi.json").json()
    return sorted(
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "put") or (method == "delete" and path in str(SCENARIOS))
    )


# Routes whose answer is a secret shown once: the receipt keeps its fingerprint, never the
# secret, so one request rotates and every repeat of the key is 409 naming the key.
SHOWN_ONCE = {"POST /v1/platform/callback-secret"}


def test_every_post_and_put_route_has_a_scenario(api: Api) -> None:
    missing = [
        r for r in routes(api) if r not in SCENARIOS and r not in EXEMPT and r not in SHOWN_ONCE
    ]
    assert missing == []


def test_ten_concurrent_same_key_secret_rotations_rotate_once(api: Api) -> None:
    admin = api.key(SELLER, "admin")
    call = Call("POST", "/v1/platform/callback-secret", {}, headers=admin)
    key = f"k-{uuid.uuid4()}"
    before = last_position(api)
    answers: list[Any] = []
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        answers.append(send(api, call, key))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 9, [a.text for a in answers]
    shown_secret = next(a for a in answers if a.status_code == 201).json()["secret"]
    for refused in (a for a in answers if a.status_code == 409):
        problem = refused.json()
        assert problem["type"] == "urn:fapiao:problem:secret-shown-once"
        assert key in problem["detail"] and shown_secret not in refused.text
    with api.services.engine.connect() as conn:
        stored = conn.execute(
            select(callback_secrets.c.secret).where(callback_secrets.c.tenant_id == SELLER)
        ).scalar_one()
    assert stored == shown_secret  # the one effect is the secret the answer showed
    assert last_position(api) == before + 1  # the receipt, and nothing else
    (receipt,) = api.services.ledger.recorder.select_notifications(before + 1, 1)  # type: ignore[attr-defined]
    assert shown_secret.encode() not in receipt.state  # the log never holds the secret
    kept = api.services.ledger.repository.get(receipt_id(SELLER, key)).response
    digest = hashlib.sha256(shown_secret.encode()).hexdigest()
    assert kept == {"rotated": "callback_secret", "secret_sha256_prefix": digest[:16]}
    again = send(api, call, key)
    assert again.status_code == 409 and key in again.json()["detail"]
    other = send(api, call, key, {"note": "another body"})
    assert other.status_code == 422, other.text
    assert other.json()["type"] == "urn:fapiao:problem:idempotency-key-reused"
    with api.services.engine.connect() as conn:
        assert conn.execute(select(callback_secrets.c.secret)).scalar_one() == shown_secret
    assert last_position(api) == before + 1


@pytest.mark.parametrize("route", sorted(SCENARIOS))
def test_ten_concurrent_same_key_requests_give_one_effect_and_one_answer(
    api: Api, route: str
) -> None:
    call = SCENARIOS[route](api)
    key = f"k-{uuid.uuid4()}"
    before = last_position(api)
    answers: list[Any] = []
    start = threading.Barrier(10)

    def one() -> None:
        start.wait()
        answers.append(send(api, call, key))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted({a.status_code for a in answers})
    assert len(statuses) == 1 and 200 <= statuses[0] < 300, [a.text for a in answers]
    bodies = [shown(a) for a in answers]
    assert all(b == bodies[0] for b in bodies), route
    assert (
        sum(
            not a.headers.get("content-length") == "0" and shown(a).get("replayed") is False
            for a in answers
        )
        <= 1
    )
    after = last_position(api)
    if route != "POST /v1/webhooks":
        assert after > before  # the one effect
    answer = answers[0].json() if answers[0].content else {}
    if isinstance(answer, dict) and answer.get("position"):
        # The receipt is saved last; a batch answers with its last invoice's position.
        receipt = 1 if route == "POST /v1/invoice-batches" else 0
        assert answer["position"] + receipt == after, "something was saved after the first"
    if route == "POST /v1/webhooks":
        with api.services.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(webhook_subscriptions))
            assert count.scalar_one() == 1
    again = send(api, call, key)
    assert (again.status_code, shown(again)) == (statuses[0], bodies[0])
    assert last_position(api) == after
    if call.other_json is not None:
        other = send(api, call, key, call.other_json)
        assert other.status_code == 422, other.text
        assert other.json()["type"] == "urn:fapiao:problem:idempotency-key-reused"
