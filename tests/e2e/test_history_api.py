"""History for auditors: state as of any T matches a replay of the events recorded by T;
reads by auditor and compliance keys are recorded and listed for admins."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from application.invoices.status_view import fold
from infrastructure.bootstrap import Services
from tests.builders import SELLER
from tests.e2e.test_api import Api


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    with TestClient(create_app(services=services)) as client:
        yield Api(client, services)


def test_the_state_as_of_any_time_is_a_replay_of_what_was_recorded_by_then(api: Api) -> None:
    inv = api.issue()
    ref = inv["invoice_id"]
    for path, body in [
        ("submissions", {}),
        ("submission-failures", {"reason_code": "net"}),
        ("submissions", {}),
        ("missing-reports", {}),
        ("acknowledgements", {"platform_ref": "SW"}),
    ]:
        assert api.post(f"/v1/invoices/{ref}/{path}", body).status_code == 200
    invoice_id = UUID(str(ref))
    stored = api.services.ledger.event_log.select_stream(invoice_id)
    events = list(api.services.ledger.events.get(invoice_id))
    first, last = stored[0].recorded_at, stored[-1].recorded_at
    rng = random.Random(9)
    moments = [
        first - timedelta(seconds=1),
        last + timedelta(seconds=1),
        *(r.recorded_at for r in stored),
    ]
    span = (last - first).total_seconds()
    moments += [first + timedelta(seconds=rng.uniform(0, span)) for _ in range(30)]
    for at in moments:
        known = [e for e, r in zip(events, stored, strict=True) if r.recorded_at <= at]
        body = api.get(f"/v1/invoices/{ref}/as-of", api.auditor, at=at.isoformat()).json()
        assert body["version"] == len(known)
        if not known:
            assert body["known"] is False
            continue
        row = None
        for position, e in enumerate(known, start=1):
            row = fold(row, e, position)
        assert body["status"] == row["status"]  # type: ignore[index]
        assert body["state"]["submission_attempts"] == row["submission_attempts"]  # type: ignore[index]
    bad = api.get(f"/v1/invoices/{ref}/as-of", api.auditor, at="2026-11-20T10:00:00")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "at"
    assert isinstance(datetime.fromisoformat(body["as_of"]), datetime)


def test_history_reads_by_auditors_are_recorded_and_listed_for_admins(api: Api) -> None:
    inv = api.issue()
    compliance = api.key(SELLER, "compliance")
    admin = api.key(SELLER, "admin")
    api.get(f"/v1/invoices/{inv['invoice_id']}/history", api.auditor)
    api.get(f"/v1/invoices/{inv['invoice_id']}/events", compliance)
    api.get(f"/v1/invoices/{inv['invoice_id']}/history")  # a clerk: not an audit read
    log = api.get("/v1/access-log", admin).json()
    assert sorted((e["action"], e["subject"]) for e in log) == [
        ("events", inv["invoice_id"]),
        ("history", inv["invoice_id"]),
    ]
    (auditor_read,) = [e for e in log if e["action"] == "history"]
    assert "auditor" in auditor_read["roles"] and auditor_read["actor"].startswith("key:")
    assert api.get("/v1/access-log", api.auditor).status_code == 403
    assert api.get("/v1/access-log", api.key("91320621MA1MRHG205", "admin")).json() == []


def test_every_invoices_status_as_of_t_is_one_query_that_matches_a_replay(api: Api) -> None:
    rng = random.Random(5)
    refs = [str(api.issue()["invoice_id"]) for _ in range(6)]
    steps = [
        ("submissions", {}),
        ("submission-failures", {"reason_code": "x"}),
        ("acknowledgements", {"platform_ref": "A"}),
        ("rejections", {"reason_code": "E"}),
        ("missing-reports", {}),
    ]
    for _ in range(30):
        path, body = rng.choice(steps)
        api.post(f"/v1/invoices/{rng.choice(refs)}/{path}", body)  # refused steps are fine
    streams = {
        ref: (
            api.services.ledger.event_log.select_stream(UUID(ref)),
            list(api.services.ledger.events.get(UUID(ref))),
        )
        for ref in refs
    }
    times = sorted(r.recorded_at for stored, _ in streams.values() for r in stored)
    span = (times[-1] - times[0]).total_seconds()
    moments = [
        *times[::3],
        *(times[0] + timedelta(seconds=rng.uniform(0, span)) for _ in range(15)),
    ]
    for at in moments:
        expected = {}
        for ref, (stored, events) in streams.items():
            row = None
            for e, r in zip(events, stored, strict=True):
                if r.recorded_at <= at:
                    row = fold(row, e, r.position)
            if row is not None:
                expected[ref] = row["status"]
        page = api.get("/v1/invoices", api.auditor, as_of=at.isoformat(), limit=500).json()
        assert {i["invoice_id"]: i["status"] for i in page["items"]} == expected, at
        assert page["total"] == len(expected)
    # At the last recorded time the history agrees with the current view, filter included.
    missing_then = api.get(
        "/v1/invoices", api.auditor, as_of=times[-1].isoformat(), status="missing"
    ).json()
    missing_now = api.get("/v1/invoices", api.auditor, status="missing").json()
    assert {i["invoice_id"] for i in missing_then["items"]} == {
        i["invoice_id"] for i in missing_now["items"]
    }


def test_the_ledger_streams_the_tenants_events_by_position_and_time(api: Api) -> None:
    import json as _json

    mine = [api.issue() for _ in range(3)]
    api.post(f"/v1/invoices/{mine[0]['invoice_id']}/submissions", {})
    other = Api(api.client, api.services)  # a second tenant's invoice is never included
    other.clerk = api.other
    theirs = other.issue()
    r = api.client.get("/v1/ledger/events", headers=api.auditor)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [_json.loads(line) for line in r.text.splitlines()]
    streams = {e["stream_id"] for e in lines}
    assert {str(m["invoice_id"]) for m in mine} <= streams
    assert str(theirs["invoice_id"]) not in streams
    positions = [e["position"] for e in lines]
    assert positions == sorted(positions)
    window = api.client.get(
        "/v1/ledger/events",
        headers=api.auditor,
        params={"after_position": positions[1], "to_position": positions[3]},
    ).text.splitlines()
    assert [_json.loads(x)["position"] for x in window] == positions[2:4]
    cut = lines[2]["recorded_at"]
    until = [
        _json.loads(x)
        for x in api.client.get(
            "/v1/ledger/events", headers=api.auditor, params={"until": cut}
        ).text.splitlines()
    ]
    assert all(e["recorded_at"] <= cut for e in until) and len(until) >= 3
    assert api.client.get("/v1/ledger/events", headers=api.clerk).status_code == 403


def test_reading_many_streams_at_once_gives_each_streams_own_read(api: Api) -> None:
    refs = [api.issue(number=f"2611200000000000{n:04d}")["invoice_id"] for n in range(3)]
    assert api.post(f"/v1/invoices/{refs[0]}/submissions", {}).status_code == 200
    ids = [UUID(str(r)) for r in refs]
    unknown = UUID(int=7)
    log = api.services.ledger.event_log
    many = log.select_streams([ids[2], unknown, *ids[:2]])
    assert list(many) == [ids[2], unknown, *ids[:2]]
    assert many[unknown] == []
    for i in ids:
        assert many[i] == list(log.select_stream(i))
    assert [r.originator_version for r in many[ids[0]]] == [1, 2]
