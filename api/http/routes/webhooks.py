"""Alert webhooks: subscribe a URL to alert types; inspect and redeliver deliveries.

Each request carries `X-Fapiao-Event`, `X-Fapiao-Delivery`, `X-Fapiao-Timestamp` and
`X-Fapiao-Signature: sha256=<HMAC-SHA256(secret, timestamp + "." + body)>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import Once, PrincipalDep, ServicesDep
from api.http.schemas import shown
from application.access import POLICY_WRITERS
from application.monitoring.alert_rules import EVENT_TYPES

router = APIRouter(prefix="/v1/webhooks", tags=["alerts"])


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://erp.example.cn/hooks/fapiao",
                    "events": ["invoice.missing", "invoice.rejected", "reconciliation.mismatch"],
                }
            ]
        },
    )
    url: str = Field(description="http(s) URL that receives POSTs")
    events: list[str] = Field(
        default_factory=lambda: list(EVENT_TYPES), description=", ".join(EVENT_TYPES)
    )


class SubscriptionCreated(BaseModel):
    subscription_id: UUID
    secret: str = Field(description="Verify X-Fapiao-Signature with it; shown once")
    url: str
    events: list[str]


class SubscriptionOut(BaseModel):
    subscription_id: UUID
    url: str
    events: list[str]
    created_at: str


class DeliveryOut(BaseModel):
    delivery_id: UUID
    subscription_id: UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    delivered_at: str | None
    payload: dict[str, Any]


def _t(value: datetime | None) -> str | None:
    return shown(value)


@router.post(
    "",
    response_model=SubscriptionCreated,
    status_code=201,
    summary="Subscribe a URL to alerts",
    dependencies=[Once],
)
def subscribe(
    body: SubscriptionIn, principal: PrincipalDep, services: ServicesDep
) -> SubscriptionCreated:
    principal.require(POLICY_WRITERS)
    sid, secret = services.webhooks.subscribe(principal.tenant_id, body.url, body.events)
    return SubscriptionCreated(
        subscription_id=sid, secret=secret, url=body.url, events=sorted(set(body.events))
    )


@router.get("", response_model=list[SubscriptionOut], summary="Active subscriptions")
def subscriptions(principal: PrincipalDep, services: ServicesDep) -> list[SubscriptionOut]:
    return [
        SubscriptionOut(
            subscription_id=s["subscription_id"],
            url=s["url"],
            events=s["events"],
            created_at=_t(s["created_at"]) or "",
        )
        for s in services.webhooks.subscriptions(principal.tenant_id)
    ]


@router.delete(
    "/{subscription_id}", status_code=204, summary="Stop sending to a URL", dependencies=[Once]
)
def unsubscribe(subscription_id: UUID, principal: PrincipalDep, services: ServicesDep) -> None:
    principal.require(POLICY_WRITERS)
    services.webhooks.unsubscribe(principal.tenant_id, subscription_id)


@router.get(
    "/deliveries",
    response_model=list[DeliveryOut],
    summary="Deliveries, newest first; status=dead is the dead-letter list",
)
def deliveries(
    principal: PrincipalDep,
    services: ServicesDep,
    status: Literal["pending", "delivered", "dead"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    return [
        DeliveryOut(
            delivery_id=d.delivery_id,
            subscription_id=d.subscription_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=_t(d.next_attempt_at) if d.status == "pending" else None,
            last_error=d.last_error,
            delivered_at=_t(d.delivered_at),
            payload=d.payload,
        )
        for d in services.webhooks.deliveries(principal.tenant_id, status, limit)
    ]


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again (for example a dead one, once the receiver is fixed)",
    dependencies=[Once],
)
def redeliver(delivery_id: UUID, principal: PrincipalDep, services: ServicesDep) -> dict[str, str]:
    principal.require(POLICY_WRITERS)
    services.webhooks.redeliver(principal.tenant_id, delivery_id)
    return {"status": "pending"}
