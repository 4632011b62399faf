"""Complaint cases (投诉/申诉): lodge, evidence, the exchange log, deadlines, escalation,
resolution; and the per-role work queues of all cases."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.http.deps import PrincipalDep, ServicesDep, provenance, read_from
from api.http.schemas import UPLOAD_EXAMPLE, shown
from application.access import APPROVERS, INVOICE_WRITERS, REVIEWERS
from application.remedies.case_commands import CaseResult
from domain.remedies.complaint import CHANNELS, ESCALATIONS, OUTCOMES, Complaint
from infrastructure.bootstrap import Services

router = APIRouter(prefix="/v1", tags=["complaints and cases"])


class LodgeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "invoices": ["26112000000135114086"],
                    "channel": "hotline_12366",
                    "demand": "请核查我司已上传但平台查询不到的发票，并在五个工作日内答复",
                    "reply_due_on": "2026-11-30",
                    "reminder_days": 2,
                }
            ]
        },
    )
    invoices: list[str] = Field(min_length=1)
    channel: str = Field(description=", ".join(CHANNELS))
    demand: str
    reply_due_on: date | None = None
    reminder_days: int = 2


class ExchangeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "at": "2026-11-24T10:05:00+08:00",
                    "channel": "hotline_12366",
                    "counterpart": "李女士",
                    "counterpart_role": "12366 坐席",
                    "said": "已登记，转区局核查",
                    "promised": "三个工作日内回电",
                    "promised_reply_on": "2026-11-27",
                }
            ]
        },
    )
    at: AwareDatetime
    channel: str
    counterpart: str = ""
    counterpart_role: str = ""
    said: str
    promised: str = ""
    promised_reply_on: date | None = None


class DeadlineIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"due_on": "2026-11-30", "reminder_days": 2}]},
    )
    due_on: date
    reminder_days: int = 2


class EscalateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "step": "written_appeal",
                    "to": "北京市海淀区税务局",
                    "note": "书面申诉",
                    "due_on": "2026-12-10",
                }
            ]
        },
    )
    step: str = Field(description=", ".join(ESCALATIONS))
    to: str
    note: str = ""
    due_on: date


class ResolveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "resolved", "text": "区局已补录，平台可查"}]},
    )
    outcome: str = Field(description=", ".join(OUTCOMES))
    text: str = ""


class ComplaintOut(BaseModel):
    complaint_id: UUID
    number: str
    status: str
    complainant: str
    invoice_ids: list[UUID]
    channel: str
    demand: str
    reply_due_on: date | None
    reminder_days: int
    log_entries: int
    evidence: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    reply_overdue: bool
    invoices_still_missing: list[UUID] = Field(
        description="Set on resolution: linked invoices still missing then (flagged)"
    )
    invoice_keys: list[str] = Field(description="The linked invoices' keys, as people know them")
    invoices_still_missing_keys: list[str] = Field(description="Keys of those still missing")
    position: int = 0

    @classmethod
    def of(cls, c: Complaint, services: Services, position: int = 0) -> ComplaintOut:
        keys = services.reader.keys_for(c.tenant_id, [UUID(i) for i in c.invoice_ids])
        return cls(
            complaint_id=c.id,
            number=c.number,
            status=c.status,
            complainant=c.complainant,
            invoice_ids=[UUID(i) for i in c.invoice_ids],
            channel=c.channel,
            demand=c.demand,
            reply_due_on=c.reply_due_on,
            reminder_days=c.reminder_days,
            log_entries=c.log_entries,
            evidence=c.evidence,
            escalations=c.escalations,
            reply_overdue=c.overdue_for is not None and c.overdue_for == c.reply_due_on,
            invoices_still_missing=[UUID(i) for i in c.still_missing],
            invoice_keys=[keys.get(UUID(i), i) for i in c.invoice_ids],
            invoices_still_missing_keys=[keys.get(UUID(i), i) for i in c.still_missing],
            position=position,
        )


def _view(result: CaseResult, services: Services) -> ComplaintOut:
    return ComplaintOut.of(result.case, services, result.position)


@router.post(
    "/complaints",
    response_model=ComplaintOut,
    status_code=201,
    summary="Lodge a complaint about invoices",
)
def lodge(body: LodgeIn, principal: PrincipalDep, services: ServicesDep) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    ids = [services.ledger.resolve_invoice_id(principal.tenant_id, r) for r in body.invoices]
    return _view(
        services.complaints.lodge(
            principal.tenant_id,
            principal.person,
            ids,
            body.channel,
            body.demand,
            body.reply_due_on,
            body.reminder_days,
            provenance(principal, None, services),
        ),
        services,
    )


@router.get("/complaints/{complaint_id}", response_model=ComplaintOut, summary="One complaint")
def get(complaint_id: UUID, principal: PrincipalDep, services: ServicesDep) -> ComplaintOut:
    return ComplaintOut.of(services.complaints.get(principal.tenant_id, complaint_id), services)


@router.post(
    "/complaints/{complaint_id}/evidence",
    response_model=ComplaintOut,
    status_code=201,
    summary="Attach evidence (PDF, OFD, XML, JPEG, PNG by content)",
    openapi_extra=UPLOAD_EXAMPLE,
)
def evidence(
    complaint_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    file: Annotated[UploadFile, File()],
) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    services.complaints.get(principal.tenant_id, complaint_id)
    with services.attachments.staged(file.file, file.filename or "evidence") as ref:
        return _view(
            services.complaints.add_evidence(
                principal.tenant_id, complaint_id, ref, provenance(principal, None, services)
            ),
            services,
        )


@router.post(
    "/complaints/{complaint_id}/exchanges",
    response_model=ComplaintOut,
    summary="Log an exchange (a promised reply date becomes the deadline)",
)
def exchange(
    complaint_id: UUID, body: ExchangeIn, principal: PrincipalDep, services: ServicesDep
) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.complaints.log_exchange(
            principal.tenant_id,
            complaint_id,
            body.at,
            body.channel,
            body.counterpart,
            body.counterpart_role,
            body.said,
            body.promised,
            body.promised_reply_on,
            provenance(principal, None, services),
        ),
        services,
    )


@router.put(
    "/complaints/{complaint_id}/reply-deadline",
    response_model=ComplaintOut,
    summary="Set the reply deadline and how many days before to remind",
)
def deadline(
    complaint_id: UUID, body: DeadlineIn, principal: PrincipalDep, services: ServicesDep
) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.complaints.set_reply_deadline(
            principal.tenant_id,
            complaint_id,
            body.due_on,
            body.reminder_days,
            provenance(principal, None, services),
        ),
        services,
    )


@router.post(
    "/complaints/{complaint_id}/escalations",
    response_model=ComplaintOut,
    summary="Escalate (written appeal, third party) with its own deadline",
)
def escalate(
    complaint_id: UUID, body: EscalateIn, principal: PrincipalDep, services: ServicesDep
) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.complaints.escalate(
            principal.tenant_id,
            complaint_id,
            body.step,
            body.to,
            body.note,
            body.due_on,
            provenance(principal, None, services),
        ),
        services,
    )


@router.post(
    "/complaints/{complaint_id}/resolution",
    response_model=ComplaintOut,
    summary="Close it: resolved, withdrawn or rejected",
)
def resolve(
    complaint_id: UUID, body: ResolveIn, principal: PrincipalDep, services: ServicesDep
) -> ComplaintOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.complaints.resolve(
            principal.tenant_id,
            complaint_id,
            body.outcome,
            body.text,
            provenance(principal, None, services),
        ),
        services,
    )


class CaseRow(BaseModel):
    case_id: UUID
    case_type: str
    number: str
    status: str
    owner: str
    review_due_at: str | None
    reply_due_on: date | None
    flagged: bool


class RoleQueue(BaseModel):
    items: list[CaseRow]
    count: int


def _queue(rows: list[dict[str, Any]]) -> RoleQueue:
    return RoleQueue(
        count=len(rows),
        items=[
            CaseRow(
                case_id=r["case_id"],
                case_type=r["case_type"],
                number=r["number"],
                status=r["status"],
                owner=r["owner"],
                review_due_at=shown(r["review_due_at"]),
                reply_due_on=r["reply_due_on"],
                flagged=bool(r["flagged"]),
            )
            for r in rows
        ],
    )


@router.get(
    "/queues/reviewer",
    response_model=RoleQueue,
    summary="Reviewer: applications waiting for review",
)
def reviewer_queue(
    request: Request, response: Response, principal: PrincipalDep, services: ServicesDep
) -> RoleQueue:
    principal.require(REVIEWERS)
    cases = read_from(services, request, response, "cases", None).cases
    return _queue(cases.queue(principal.tenant_id, "reentry", ["submitted"]))


@router.get(
    "/queues/approver",
    response_model=RoleQueue,
    summary="Approver: reviewed applications waiting for approval",
)
def approver_queue(
    request: Request, response: Response, principal: PrincipalDep, services: ServicesDep
) -> RoleQueue:
    principal.require(APPROVERS)
    cases = read_from(services, request, response, "cases", None).cases
    return _queue(cases.queue(principal.tenant_id, "reentry", ["reviewed"]))


class ClerkQueues(BaseModel):
    returned_applications: RoleQueue
    replies_due: RoleQueue
    resolved_but_still_missing: RoleQueue


@router.get(
    "/queues/clerk",
    response_model=ClerkQueues,
    summary="Clerk: returned applications, complaints with a reply due soon, flagged resolutions",
)
def clerk_queue(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    days: Annotated[int, Query(ge=0, le=60)] = 3,
) -> ClerkQueues:
    principal.require(INVOICE_WRITERS)
    today = services.ledger.today()
    t = principal.tenant_id
    cases = read_from(services, request, response, "cases", None).cases
    return ClerkQueues(
        returned_applications=_queue(cases.queue(t, "reentry", ["returned"])),
        replies_due=_queue(cases.queue(t, "complaint", ["open"], today + timedelta(days=days))),
        resolved_but_still_missing=_queue(cases.queue(t, "complaint", ["resolved"], flagged=True)),
    )
