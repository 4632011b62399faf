"""The tenant's policy for finding missing invoices and deciding cases: acknowledgement window,
maintenance windows, review days and the company's closure days."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.http.deps import PrincipalDep, ServicesDep, provenance
from api.http.schemas import shown
from application.access import POLICY_WRITERS
from application.monitoring.policy_service import PolicyView

router = APIRouter(prefix="/v1/policy", tags=["policy"])


class WindowOut(BaseModel):
    window_id: UUID
    starts_at: str
    ends_at: str
    note: str


class PolicyOut(BaseModel):
    ack_window_hours: float = Field(
        description="An upload not acknowledged this long after it "
        "was sent (maintenance excluded) is marked missing"
    )
    maintenance_windows: list[WindowOut]
    review_working_days: int = Field(
        description="Supplementary-entry applications must be decided within this many working days"
    )
    closure_days: dict[date, str] = Field(
        description="The company's own closure days (not working days), with their notes"
    )
    working_days: str = Field(description="How working days are counted for this tenant")
    position: int = Field(description="Log position of the change (0 on reads)")

    @classmethod
    def of(cls, view: PolicyView) -> PolicyOut:
        return cls(
            ack_window_hours=view.ack_window.total_seconds() / 3600,
            maintenance_windows=[
                WindowOut(
                    window_id=w.window_id,
                    starts_at=shown(w.starts_at) or "",
                    ends_at=shown(w.ends_at) or "",
                    note=w.note,
                )
                for w in view.windows
            ],
            review_working_days=view.review_working_days,
            closure_days=view.closure_days,
            working_days=view.calendar,
            position=view.position,
        )


class AckWindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"hours": 48}]})
    hours: float = Field(
        gt=0,
        le=24 * 60,
        allow_inf_nan=False,
        description="Applies to uploads from now on (1 minute to 60 days)",
    )


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "starts_at": "2026-11-28T22:00:00+08:00",
                    "ends_at": "2026-11-29T06:00:00+08:00",
                    "note": "电子税务局系统升级",
                }
            ]
        },
    )
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    note: str = ""


@router.get("", response_model=PolicyOut, summary="The policy in force")
def get_policy(principal: PrincipalDep, services: ServicesDep) -> PolicyOut:
    return PolicyOut.of(services.policies.get_policy(principal.tenant_id))


@router.put("/ack-window", response_model=PolicyOut, summary="Set the acknowledgement window")
def set_ack_window(body: AckWindowIn, principal: PrincipalDep, services: ServicesDep) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    return PolicyOut.of(
        services.policies.set_ack_window(
            principal.tenant_id, timedelta(hours=body.hours), provenance(principal, None, services)
        )
    )


@router.post(
    "/maintenance-windows",
    response_model=PolicyOut,
    status_code=201,
    summary="Declare a platform maintenance window (its time does not count)",
)
def declare(body: MaintenanceIn, principal: PrincipalDep, services: ServicesDep) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    _, view = services.policies.declare_maintenance(
        principal.tenant_id,
        body.starts_at,
        body.ends_at,
        body.note,
        provenance(principal, None, services),
    )
    return PolicyOut.of(view)


@router.delete(
    "/maintenance-windows/{window_id}",
    response_model=PolicyOut,
    summary="Withdraw a maintenance window declared by mistake",
)
def withdraw(window_id: UUID, principal: PrincipalDep, services: ServicesDep) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    return PolicyOut.of(
        services.policies.withdraw_maintenance(
            principal.tenant_id, window_id, provenance(principal, None, services)
        )
    )


class ReviewDaysIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 3}]})
    days: int


@router.put(
    "/review-days",
    response_model=PolicyOut,
    summary="Working days within which applications must be decided",
)
def set_review_days(
    body: ReviewDaysIn, principal: PrincipalDep, services: ServicesDep
) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    return PolicyOut.of(
        services.policies.set_review_days(
            principal.tenant_id, body.days, provenance(principal, None, services)
        )
    )


class ClosureDaysIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"days": ["2026-12-30", "2026-12-31"], "note": "年终盘点，公司停工"}]
        },
    )
    days: list[date] = Field(min_length=1, max_length=60)
    note: str = Field(default="", max_length=200)


class ClosureWithdrawalIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"days": ["2026-12-31"]}]}
    )
    days: list[date] = Field(min_length=1, max_length=60)


@router.post(
    "/closure-days",
    response_model=PolicyOut,
    status_code=201,
    summary="Declare company closure days (not working days for deadlines set from now on)",
)
def declare_closure_days(
    body: ClosureDaysIn, principal: PrincipalDep, services: ServicesDep
) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    return PolicyOut.of(
        services.policies.declare_closure_days(
            principal.tenant_id, body.days, body.note, provenance(principal, None, services)
        )
    )


@router.post(
    "/closure-days/withdrawal",
    response_model=PolicyOut,
    summary="Make declared closure days working days again",
)
def withdraw_closure_days(
    body: ClosureWithdrawalIn, principal: PrincipalDep, services: ServicesDep
) -> PolicyOut:
    principal.require(POLICY_WRITERS)
    return PolicyOut.of(
        services.policies.withdraw_closure_days(
            principal.tenant_id, body.days, provenance(principal, None, services)
        )
    )
