"""Schemathesis over the OpenAPI document, on both stores, with a key holding every role:
no server error (5xx other than a 503 that says to retry, which only a deliberate outage would
give), no status code or content type the document does not name. Valid and invalid requests
for every operation; examples bounded (EXAMPLES each) so the run takes a few minutes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from api.http.app import create_app
from infrastructure.bootstrap import Services
from infrastructure.outbound import OutboundGuard
from tests.builders import OTHER_TENANT, SELLER, issue_json

EXAMPLES = 25
ALL_ROLES = "clerk,reviewer,approver,auditor,compliance,admin"


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """5xx is a failure, except 503 with Retry-After (a projection behind: retry)."""
    retry = "retry-after" in {k.lower() for k in response.headers}
    if response.status_code >= 500 and not (response.status_code == 503 and retry):
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
    return None


@pytest.fixture
def served(services: Services) -> Iterator[tuple[Any, dict[str, str]]]:
    services.keys.ensure_tenant(SELLER, "北京云帆科技有限公司")
    services.keys.ensure_tenant(OTHER_TENANT, "南通")
    services.webhooks.guard = OutboundGuard()  # nothing internal is ever contacted
    headers = {"Authorization": f"Bearer {services.keys.create_key(SELLER, ALL_ROLES)[1]}"}
    app = create_app(services=services, run_workers=True)
    with TestClient(app) as client:  # the lifespan: services on app.state, workers running
        assert client.post("/v1/invoices", json=issue_json(), headers=headers).status_code == 201
        yield schemathesis.openapi.from_asgi("/openapi.json", app), headers


# The app's own threads (projection workers, tickers) draw on `random` while Hypothesis
# generates (span ids once another test has turned tracing on): Hypothesis warns that the
# global random state moved during a draw. That is not the strategy's doing; ignore it here.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_every_operation_answers_as_documented(served: tuple[Any, dict[str, str]]) -> None:
    schema, headers = served
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases: list[Any] = []

            # Generated first, sent afterwards: nothing the app does during a request (the
            # tracer's random ids, say) happens while Hypothesis is drawing.
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def generate(case: Any) -> None:
                cases.append(case)  # noqa: B023 - called at once, in this iteration

            try:
                generate()
            except Unsatisfiable:  # an operation without parameters has no invalid request
                assert mode is GenerationMode.NEGATIVE
            for case in cases:
                try:
                    case.call_and_validate(
                        headers=headers,
                        checks=[no_server_error, status_code_conformance, content_type_conformance],
                    )
                except Exception as e:  # noqa: BLE001 - collected: every operation is tried
                    failures.append(f"{operation.label} ({mode.value}): {str(e)[:600]}")
                    break
    assert failures == [], "\n\n".join(failures)
