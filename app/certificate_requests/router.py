"""HTTP for certificate requests: a generated key and its CSR, for a certificate bought elsewhere."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from app.accounts.service import UnknownAccount
from app.certificate_requests.errors import InvalidRequestName, RequestCompleted, RequestKeyMismatch
from app.certificate_requests.models import CertificateRequest
from app.certificate_requests.repository import CertificateRequestRepository
from app.certificate_requests.schemas import (
    CertificateRequestCreate,
    CertificateRequestOut,
    CertificateRequestPage,
    IssuedCertificateIn,
)
from app.certificate_requests.service import CertificateRequestService
from app.certificates import errors as cert_errors
from app.certificates.reading import MaterialBusy
from app.certificates.repository import CertificateRepository
from app.certificates.router import UPLOAD_RESPONSES, uploaded_response
from app.certificates.schemas import CertificateUploadOut
from app.certificates.service import CertificateService
from app.deps import Context, CurrentCaller, Session
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.paging import InvalidCursor, PageParams
from app.problems import Forbidden, NotFound, responses
from app.schemas import ModelResponse

router = APIRouter(prefix="/v1/certificate-requests", tags=["certificates"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> CertificateRequestService:
    certificates = CertificateService(CertificateRepository(session), ctx.master_key, ctx.trust)
    return CertificateRequestService(CertificateRequestRepository(session), certificates, ctx.master_key,
                                     ctx.material_reader())


Service = Annotated[CertificateRequestService, Depends(get_service)]


def to_out(row: CertificateRequest) -> CertificateRequestOut:
    """Every column but the sealed key."""
    return CertificateRequestOut(
        id=row.id, account_id=row.account_id, name=row.name, names=row.names, key_type=row.key_type,
        status=row.status, csr_pem=row.csr_pem, public_key_sha256=row.public_key_sha256,
        certificate_id=row.certificate_id, completed_at=row.completed_at, created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("", operation_id="createCertificateRequest", response_description="The request, with its CSR",
    summary="Generate a key and a CSR for a certificate bought elsewhere",
    status_code=201, dependencies=[IDEMPOTENT], response_model=CertificateRequestOut,
    responses=responses(InvalidRequestName, cert_errors.WildcardPublicSuffix, Forbidden, UnknownAccount,
                        MaterialBusy))
async def create_certificate_request(body: CertificateRequestCreate, caller: CurrentCaller, service: Service,
                                     response: Response):
    """Generate a private key of `key_type` (kept sealed, never returned) and a PKCS#10 certificate
    signing request (RFC 2986) for `names`: the first name is the subject's commonName, every name
    a subjectAltName; wildcards are allowed. Give `csr_pem` to the CA, then import the certificate
    it issues with `POST /v1/certificate-requests/{request_id}/certificate`. Until then the request
    is `pending`. A customer's request belongs to its account; an admin may name one."""
    row = await service.create(caller, names=body.names, key_type=body.key_type, name=body.name,
                               account_id=body.account_id)
    response.headers["Location"] = f"/v1/certificate-requests/{row.id}"
    return to_out(row)


@router.get("", operation_id="listCertificateRequests", response_description="A page of certificate requests",
    summary="List certificate requests",
    response_model=CertificateRequestPage, responses=responses(InvalidCursor))
async def list_certificate_requests(
    caller: CurrentCaller,
    service: Service,
    page: PageParams,
    status_: Annotated[Literal["pending", "completed"] | None, Query(
        alias="status", description="Only requests in this state.", examples=["pending"])] = None,
    account_id: Annotated[str | None, Query(
        description="Only this account's requests. A customer sees only its own account's whatever it names "
        "here (another account: an empty list).")] = None,
):
    """Certificate requests the caller may see, newest first, with their CSRs (never a key). A
    customer sees its own account's only. Cursor-paginated: pass `next_cursor` back as `cursor`."""
    window = await service.list(caller, account_id=account_id, status=status_, page=page)
    return ModelResponse(CertificateRequestPage.of(window, [to_out(r) for r in window.rows]))


@router.get("/{request_id}", operation_id="getCertificateRequest", response_description="The certificate request",
    summary="Get a certificate request",
    response_model=CertificateRequestOut, responses=responses(NotFound))
async def get_certificate_request(request_id: str, caller: CurrentCaller, service: Service):
    """One certificate request: its names, key type, CSR and state. Never the key. Another
    account's request is 404, as one that does not exist."""
    return to_out(await service.get_visible(caller, request_id))


@router.post("/{request_id}/certificate", operation_id="importCertificateRequestCertificate",
    response_description="The certificate, stored with the request's key",
    summary="Import the certificate a CA issued for a request",
    status_code=201, dependencies=[IDEMPOTENT], response_model=CertificateUploadOut,
    responses={**responses(NotFound, RequestKeyMismatch, RequestCompleted, *cert_errors.MATERIAL_ERRORS,
                           MaterialBusy), **UPLOAD_RESPONSES})
async def import_certificate_request_certificate(request_id: str, body: IssuedCertificateIn, caller: CurrentCaller,
                                                 service: Service, ctx: Context):
    """Pair the certificate the CA issued (and its chain, in any order) with the request's key: no
    key is sent. Its public key must be the request's (422 `certificate_request_key_mismatch`);
    then every upload rule applies and it is stored as an uploaded certificate of the request's
    account, answered as `POST /v1/certificates` answers (201, or 200 when the owner already had
    it). The request becomes `completed` and keeps no key; a second import is 409
    `certificate_request_completed`."""
    stored = await service.complete(caller, request_id, certificate_pem=body.certificate_pem,
                                    chain_pem=body.chain_pem, name=body.name)
    return await uploaded_response(service.certificates, stored, ctx)


@router.delete("/{request_id}", operation_id="deleteCertificateRequest", response_description="Deleted",
    summary="Delete a certificate request", status_code=204, responses=responses(NotFound))
async def delete_certificate_request(request_id: str, caller: CurrentCaller, service: Service):
    """Delete a request and its key: a certificate issued for it can no longer be imported. A
    completed request's certificate is not affected."""
    await service.delete(caller, request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
