"""HTTP for certificates: parse, delegate to the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile, status

from app import examples as ex
from app.accounts.service import UnknownAccount
from app.certificates import errors, material
from app.certificates.models import Certificate
from app.certificates.reading import MaterialBusy
from app.certificates.repository import CertificateRepository, Usage
from app.certificates.schemas import (
    CertificateMaterialIn,
    CertificateOut,
    CertificatePage,
    CertificateUpload,
    SelfSignedCreate,
    UsageOut,
)
from app.certificates.service import CertificateService, InvalidCursor, InvalidFilter
from app.deps import Context, CurrentCaller, Session
from app.kit import x509 as kx
from app.kit.names import InvalidName, normalise_hostname
from app.problems import Forbidden, NotFound, RuleViolation, responses
from app.schemas import Instant, ModelResponse, Text

router = APIRouter(prefix="/v1/certificates", tags=["certificates"])

MATERIAL_ERRORS = (*errors.MATERIAL_ERRORS, MaterialBusy)


class InvalidHostname(RuleViolation):
    """A name is not a valid host name (or wildcard) for a certificate."""

    code, title = "invalid_name", "Not a valid host name"


async def get_service(session: Session, ctx: Context) -> CertificateService:
    return CertificateService(CertificateRepository(session), ctx.master_key)


Service = Annotated[CertificateService, Depends(get_service)]


def to_out(cert: Certificate, usages: list[Usage]) -> CertificateOut:
    return CertificateOut(
        id=cert.id,
        name=cert.name,
        account_id=cert.account_id,
        subject=cert.subject,
        issuer=cert.issuer,
        serial=cert.serial,
        sans=cert.sans,
        not_before=cert.not_before,
        not_after=cert.not_after,
        fingerprint_sha256=cert.fingerprint_sha256,
        key_type=cert.key_type,
        key_bits=cert.key_bits,
        self_signed=cert.self_signed,
        trusted=cert.trusted,
        chain_length=cert.chain_length,
        source=cert.source,
        revision=cert.revision,
        bindings=[UsageOut(**u.__dict__) for u in usages],
        renewal_at=cert.renewal_at,
        renewal_status=cert.renewal_status,
        renewal_error=cert.renewal_error,
        created_at=cert.created_at,
        updated_at=cert.updated_at,
    )


async def _one(service: CertificateService, cert: Certificate) -> CertificateOut:
    return to_out(cert, (await service.usages_of([cert]))[cert.id])


async def _read_pem(ctx: Context, body: CertificateMaterialIn) -> material.Material:
    try:
        return await ctx.material_reader().from_pem(
            body.certificate_pem,
            body.private_key_pem,
            chain_pem=body.chain_pem,
            passphrase=body.key_passphrase,
        )
    except kx.MaterialError as exc:
        raise errors.from_material_error(exc) from None


@router.post("", operation_id="createCertificate", response_description="The certificate, stored",
    summary="Upload a certificate and its key (PEM)", status_code=201, response_model=CertificateOut, responses=responses(*MATERIAL_ERRORS, Forbidden, UnknownAccount))
async def upload_certificate(body: CertificateUpload, caller: CurrentCaller, service: Service, ctx: Context):
    """Store a certificate with its private key (PEM). The key is encrypted and never returned."""
    owner = caller.owner_for_new(body.account_id)
    mat = await _read_pem(ctx, body)
    return await _one(service, await service.store(mat, account_id=owner, name=body.name, source="upload"))


@router.post("/import", operation_id="importCertificate", response_description="The certificate, stored",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": {
        "certificate": ex.CERTIFICATE_PEM, "private_key": ex.PRIVATE_KEY_PEM, "name": "example.com 2026"}}}}},
    summary="Import a certificate from files (PEM or PKCS#12)", status_code=201, response_model=CertificateOut, responses=responses(*MATERIAL_ERRORS, Forbidden, UnknownAccount))
async def import_certificate(
    caller: CurrentCaller,
    service: Service,
    ctx: Context,
    certificate: Annotated[UploadFile | None, File(description="PEM: the leaf, optionally with its chain")] = None,
    chain: Annotated[UploadFile | None, File(description="PEM: the issuers")] = None,
    private_key: Annotated[UploadFile | None, File(description="PEM private key")] = None,
    key_passphrase: Annotated[Text | None, Form(description="For an encrypted `private_key`.")] = None,
    pkcs12: Annotated[UploadFile | None, File(description="PKCS#12 (.p12/.pfx) with key and chain")] = None,
    password: Annotated[Text | None, Form(description="The PKCS#12 password")] = None,
    name: Annotated[Text | None, Form(max_length=200, description="A label for people.")] = None,
    account_id: Annotated[Text | None, Form(description="Admins only: the owning account (default: none).")] = None,
):
    """Store a certificate from files: PEM files, or one PKCS#12 archive with its password."""
    owner = caller.owner_for_new(account_id)
    try:
        if pkcs12 is not None:
            mat = await ctx.material_reader().from_pkcs12(await pkcs12.read(), password)
        elif certificate is not None and private_key is not None:
            mat = await ctx.material_reader().from_pem(
                await certificate.read(),
                await private_key.read(),
                chain_pem=await chain.read() if chain is not None else None,
                passphrase=key_passphrase,
            )
        else:
            raise errors.InvalidCertificate("send either `pkcs12`, or `certificate` and `private_key`")
    except kx.MaterialError as exc:
        raise errors.from_material_error(exc) from None
    return await _one(service, await service.store(mat, account_id=owner, name=name, source="upload"))


@router.post("/self-signed", operation_id="createSelfSignedCertificate", response_description="The certificate, generated and stored",
    summary="Generate a self-signed certificate", status_code=201, response_model=CertificateOut, responses=responses(InvalidHostname, Forbidden, UnknownAccount))
async def create_self_signed(body: SelfSignedCreate, caller: CurrentCaller, service: Service):
    """Generate an ECDSA P-256 self-signed certificate for `names` (clients will warn)."""
    owner = caller.owner_for_new(body.account_id)
    try:
        names = list(dict.fromkeys(normalise_hostname(n, allow_wildcard=True) for n in body.names))
    except InvalidName as exc:
        raise InvalidHostname(str(exc)) from None
    mat = material.self_signed(names, days=body.days)
    return await _one(service, await service.store(mat, account_id=owner, name=body.name, source="self-signed"))


@router.get("", operation_id="listCertificates", response_description="A page of certificates",
    summary="List certificates", response_model=CertificatePage, responses=responses(InvalidCursor, InvalidFilter))
async def list_certificates(
    caller: CurrentCaller,
    service: Service,
    covers: Annotated[str | None, Query(description="Only certificates that cover this host name")] = None,
    expires_before: Annotated[Instant | None, Query(description="Only those whose not_after is earlier")] = None,
    account_id: Annotated[str | None, Query(description="Admins: only this account's")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many certificates (1 to 500).")] = 50,
    cursor: Annotated[str | None, Query(description="The previous page's `next_cursor`; absent for the first page.")] = None,
):
    """Certificates the caller may see, newest first, with their bindings. Filter by a name they cover (`covers`), by expiry (`expires_before`) and, for admins, by account. Cursor-paginated: pass `next_cursor` back as `cursor`."""
    page = await service.list(
        caller,
        covers_name=covers,
        expires_before=expires_before,
        account_id=account_id,
        limit=limit,
        cursor=cursor,
    )
    return ModelResponse(CertificatePage(
        items=[to_out(c, page.usages[c.id]) for c in page.items], next_cursor=page.next_cursor
    ))


@router.get("/{certificate_id}", operation_id="getCertificate", response_description="The certificate",
    summary="Get a certificate", response_model=CertificateOut, responses=responses(NotFound))
async def get_certificate(certificate_id: str, caller: CurrentCaller, service: Service):
    """One certificate: subject, names, validity, key, trust and where it is bound. Never the private key."""
    return await _one(service, await service.get_visible(caller, certificate_id))


@router.put(
    "/{certificate_id}", operation_id="replaceCertificate", response_description="The certificate with its new material",
    summary="Replace a certificate's material",
    response_model=CertificateOut,
    responses=responses(NotFound, errors.HostnameNotCovered, errors.CertificateExpired, errors.CertificateServerWide,
                        errors.CertificateNotYetValid, *MATERIAL_ERRORS),
)
async def replace_certificate(certificate_id: str, body: CertificateMaterialIn, caller: CurrentCaller, service: Service, ctx: Context):
    """Replace the material (certificate and key). Bindings stay; `revision` goes up; servers redeploy."""
    await service.get_visible(caller, certificate_id)
    mat = await _read_pem(ctx, body)
    return await _one(service, await service.replace(caller, certificate_id, mat, body.name))


@router.delete("/{certificate_id}", operation_id="deleteCertificate", response_description="Deleted",
    summary="Delete a certificate", status_code=204, responses=responses(NotFound, errors.CertificateInUse))
async def delete_certificate(certificate_id: str, caller: CurrentCaller, service: Service):
    """Delete a certificate and its key. Refused while it is bound anywhere (409 `certificate_in_use`, with `bindings`)."""
    await service.delete(caller, certificate_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

