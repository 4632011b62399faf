"""Supplementary-entry applications (补录申请): draft, correct, attach, submit, review, approve,
return with reasons, withdraw. The key's roles decide who may do which step; applicant,
reviewer and approver must be three different people."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import PrincipalDep, ServicesDep, provenance
from api.http.schemas import UPLOAD_EXAMPLE, shown
from application.access import APPROVERS, DECIDERS, INVOICE_WRITERS, REVIEWERS
from application.remedies.case_commands import CaseResult
from domain.remedies.reentry_application import ReEntryApplication

router = APIRouter(prefix="/v1/reentry-applications", tags=["supplementary entry"])


class DraftIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"invoices": ["26112000000135114086"], "reason": "平台查询无此发票，需补录"}
            ]
        },
    )
    invoices: list[str] = Field(min_length=1, description="Invoice ids or canonical keys")
    reason: str = ""


class FieldsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"fields": {"buyer_code": "91330100716105852F", "total": "1130.00"}}]
        },
    )
    fields: dict[str, str]


class CommentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "附件齐全，金额与合同一致"}]}
    )
    comment: str = ""


class ReasonIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "平台查询无此发票，上传回执缺失，需补录"}]},
    )
    reason: str


class ReturnIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reasons": ["附件缺少发票版式文件", "购方名称与合同不一致"]}]
        },
    )
    reasons: list[str] = Field(min_length=1)


class WithdrawIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "平台已补传成功，无需补录"}]}
    )
    reason: str = ""


class ApplicationOut(BaseModel):
    application_id: UUID
    number: str
    status: str
    round: int
    applicant: str
    reviewer: str | None
    approver: str | None
    reason: str
    invoice_ids: list[UUID]
    corrections: dict[str, dict[str, str]]
    attachments: list[dict[str, Any]]
    missing: list[dict[str, str]] = Field(description="What keeps it from being submitted")
    review_due_at: str | None = Field(
        description="Decide by then (Beijing time); set on submission"
    )
    review_calendar: str = Field(description="How the deadline's working days were counted")
    review_calendar_note: str = Field(
        description="Non-empty when some days were counted Monday to Friday (past the holiday "
        "calendar's years): check the deadline against the published holidays"
    )
    position: int = 0

    @classmethod
    def of(cls, app: ReEntryApplication, position: int = 0) -> ApplicationOut:
        return cls(
            application_id=app.id,
            number=app.number,
            status=app.status,
            round=app.round,
            applicant=app.applicant,
            reviewer=app.reviewer,
            approver=app.approver,
            reason=app.reason,
            invoice_ids=[UUID(i) for i in app.invoice_ids],
            corrections=app.corrections,
            attachments=app.attachments,
            missing=[
                {"field": e.field, "rule": e.rule, "message": e.message}
                for e in app.missing_items()
            ]
            if app.status in ("drafted", "returned")
            else [],
            review_due_at=shown(app.review_due_at),
            review_calendar=app.review_calendar,
            review_calendar_note=app.review_calendar_note,
            position=position,
        )


def _view(result: CaseResult) -> ApplicationOut:
    return ApplicationOut.of(result.case, result.position)


@router.post(
    "",
    response_model=ApplicationOut,
    status_code=201,
    summary="Open an application for missing or rejected invoices",
)
def draft(body: DraftIn, principal: PrincipalDep, services: ServicesDep) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    ids = [services.ledger.resolve_invoice_id(principal.tenant_id, ref) for ref in body.invoices]
    result = services.reentry.draft(
        principal.tenant_id,
        principal.person,
        ids,
        body.reason,
        provenance(principal, None, services),
    )
    return _view(result)


@router.get("/{application_id}", response_model=ApplicationOut, summary="One application")
def get(application_id: UUID, principal: PrincipalDep, services: ServicesDep) -> ApplicationOut:
    return ApplicationOut.of(services.reentry.get(principal.tenant_id, application_id))


@router.put(
    "/{application_id}/invoices/{invoice_ref}/fields",
    response_model=ApplicationOut,
    summary="The fields to enter for one invoice",
)
def correct(
    application_id: UUID,
    invoice_ref: str,
    body: FieldsIn,
    principal: PrincipalDep,
    services: ServicesDep,
) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, invoice_ref)
    return _view(
        services.reentry.correct(
            principal.tenant_id,
            application_id,
            principal.person,
            invoice_id,
            body.fields,
            provenance(principal, None, services),
        ),
    )


@router.put(
    "/{application_id}/reason",
    response_model=ApplicationOut,
    summary="Applicant: state why the invoices need re-entry (draft or returned)",
)
def restate_reason(
    application_id: UUID, body: ReasonIn, principal: PrincipalDep, services: ServicesDep
) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.reentry.restate_reason(
            principal.tenant_id,
            application_id,
            principal.person,
            body.reason,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{application_id}/attachments",
    response_model=ApplicationOut,
    status_code=201,
    summary="Attach evidence (PDF, OFD, XML, JPEG or PNG, checked by content)",
    openapi_extra=UPLOAD_EXAMPLE,
)
def attach(
    application_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    file: Annotated[UploadFile, File()],
) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    services.reentry.get(principal.tenant_id, application_id)  # 404 before storing anything
    with services.attachments.staged(file.file, file.filename or "attachment") as ref:
        return _view(
            services.reentry.attach(
                principal.tenant_id,
                application_id,
                principal.person,
                ref,
                provenance(principal, None, services),
            ),
        )


@router.post(
    "/{application_id}/submission",
    response_model=ApplicationOut,
    summary="Submit for review (422 lists everything missing)",
)
def submit(application_id: UUID, principal: PrincipalDep, services: ServicesDep) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.reentry.submit(
            principal.tenant_id,
            application_id,
            principal.person,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{application_id}/review",
    response_model=ApplicationOut,
    summary="Reviewer: checked, pass to an approver",
)
def review(
    application_id: UUID, body: CommentIn, principal: PrincipalDep, services: ServicesDep
) -> ApplicationOut:
    principal.require(REVIEWERS)
    return _view(
        services.reentry.review(
            principal.tenant_id,
            application_id,
            principal.person,
            body.comment,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{application_id}/approval",
    response_model=ApplicationOut,
    summary="Approver: approve; the invoices are re-entered",
)
def approve(
    application_id: UUID, body: CommentIn, principal: PrincipalDep, services: ServicesDep
) -> ApplicationOut:
    principal.require(APPROVERS)
    return _view(
        services.reentry.approve(
            principal.tenant_id,
            application_id,
            principal.person,
            body.comment,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{application_id}/return",
    response_model=ApplicationOut,
    summary="Reviewer or approver: send back with reasons",
)
def return_(
    application_id: UUID, body: ReturnIn, principal: PrincipalDep, services: ServicesDep
) -> ApplicationOut:
    principal.require(DECIDERS)
    return _view(
        services.reentry.return_to_applicant(
            principal.tenant_id,
            application_id,
            principal.person,
            body.reasons,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{application_id}/withdrawal", response_model=ApplicationOut, summary="Applicant: withdraw"
)
def withdraw(
    application_id: UUID, body: WithdrawIn, principal: PrincipalDep, services: ServicesDep
) -> ApplicationOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.reentry.withdraw(
            principal.tenant_id,
            application_id,
            principal.person,
            body.reason,
            provenance(principal, None, services),
        ),
    )
