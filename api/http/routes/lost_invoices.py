"""Lost paper invoice cases: the loss, the request for a copy, the certificate, scans."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, ConfigDict

from api.http.deps import PrincipalDep, ServicesDep, provenance
from api.http.schemas import upload_example
from application.access import INVOICE_WRITERS
from application.remedies.case_commands import CaseResult
from domain.remedies.lost_invoice import LostInvoiceCase

router = APIRouter(prefix="/v1/lost-invoice-cases", tags=["lost paper invoices"])


class LossIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "invoice": "011002600104:00012345",
                    "lost_on": "2026-11-18",
                    "place": "出差途中（上海虹桥站）",
                    "circumstances": "公文包遗失，含发票联和抵扣联",
                }
            ]
        },
    )
    invoice: str
    lost_on: date
    place: str = ""
    circumstances: str


class CopyRequestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "issuer": "北京云帆科技有限公司",
                    "requested_on": "2026-11-19",
                    "note": "请提供加盖发票专用章的记账联复印件",
                }
            ]
        },
    )
    issuer: str
    requested_on: date
    note: str = ""


class CertificateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"certificate_number": "京税证〔2026〕00123", "issued_on": "2026-11-25"}]
        },
    )
    certificate_number: str
    issued_on: date


class CloseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"outcome": "copy_obtained", "note": "已取得复印件并入账"}]
        },
    )
    outcome: str
    note: str = ""


class LostCaseOut(BaseModel):
    case_id: UUID
    number: str
    status: str
    invoice_id: UUID | None
    copy_requested: bool
    certificate_number: str | None
    attachments: list[dict[str, Any]]
    position: int = 0

    @classmethod
    def of(cls, c: LostInvoiceCase, position: int = 0) -> LostCaseOut:
        return cls(
            case_id=c.id,
            number=c.number,
            status=c.status,
            invoice_id=c.invoice_id,
            copy_requested=c.copy_requested,
            certificate_number=c.certificate_number,
            attachments=c.attachments,
            position=position,
        )


def _view(result: CaseResult) -> LostCaseOut:
    return LostCaseOut.of(result.case, result.position)


@router.post("", response_model=LostCaseOut, status_code=201, summary="Record a lost paper invoice")
def record(body: LossIn, principal: PrincipalDep, services: ServicesDep) -> LostCaseOut:
    principal.require(INVOICE_WRITERS)
    invoice_id = services.ledger.resolve_invoice_id(principal.tenant_id, body.invoice)
    return _view(
        services.lost_invoices.record(
            principal.tenant_id,
            invoice_id,
            body.lost_on,
            body.place,
            body.circumstances,
            provenance(principal, None, services),
        ),
    )


@router.get("/{case_id}", response_model=LostCaseOut, summary="One case")
def get(case_id: UUID, principal: PrincipalDep, services: ServicesDep) -> LostCaseOut:
    return LostCaseOut.of(services.lost_invoices.get(principal.tenant_id, case_id))


@router.post(
    "/{case_id}/copy-request",
    response_model=LostCaseOut,
    summary="The issuer was asked for a stamped copy",
)
def copy_request(
    case_id: UUID, body: CopyRequestIn, principal: PrincipalDep, services: ServicesDep
) -> LostCaseOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.lost_invoices.request_copy(
            principal.tenant_id,
            case_id,
            body.issuer,
            body.requested_on,
            body.note,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{case_id}/certificate",
    response_model=LostCaseOut,
    summary="The tax bureau's certificate (丢失增值税专用发票已报税证明单)",
)
def certificate(
    case_id: UUID, body: CertificateIn, principal: PrincipalDep, services: ServicesDep
) -> LostCaseOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.lost_invoices.record_certificate(
            principal.tenant_id,
            case_id,
            body.certificate_number,
            body.issued_on,
            provenance(principal, None, services),
        ),
    )


@router.post(
    "/{case_id}/attachments",
    response_model=LostCaseOut,
    status_code=201,
    summary="A scan for a step: loss, copy_request, copy or certificate",
    openapi_extra=upload_example(step="copy"),
)
def attach(
    case_id: UUID,
    principal: PrincipalDep,
    services: ServicesDep,
    file: Annotated[UploadFile, File()],
    step: Annotated[str, Form()],
) -> LostCaseOut:
    principal.require(INVOICE_WRITERS)
    services.lost_invoices.get(principal.tenant_id, case_id)
    with services.attachments.staged(file.file, file.filename or step) as ref:
        return _view(
            services.lost_invoices.attach(
                principal.tenant_id, case_id, step, ref, provenance(principal, None, services)
            ),
        )


@router.post(
    "/{case_id}/closure",
    response_model=LostCaseOut,
    summary="Close: copy_obtained, certificate_obtained or abandoned",
)
def close(
    case_id: UUID, body: CloseIn, principal: PrincipalDep, services: ServicesDep
) -> LostCaseOut:
    principal.require(INVOICE_WRITERS)
    return _view(
        services.lost_invoices.close(
            principal.tenant_id,
            case_id,
            body.outcome,
            body.note,
            provenance(principal, None, services),
        ),
    )
