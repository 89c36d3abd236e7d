"""HTTP for certificates: parse, delegate to the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile, status

from app import examples as ex
from app.accounts.service import UnknownAccount
from app.certificates import errors, material
from app.certificates.models import Certificate
from app.certificates.reading import MaterialBusy
from app.certificates.repository import SORTS, CertificateRepository, Usage
from app.certificates.schemas import (
    CertificateMaterialIn,
    CertificateOut,
    CertificatePage,
    CertificateUpload,
    CertificateUploadOut,
    SelfSignedCreate,
)
from app.certificates.service import CertificateService, InvalidCursor, InvalidFilter, Stored
from app.certificates.trust import Trust, upload_warnings
from app.deps import Context, CurrentCaller, Reader, ReadingCaller, Session, read_inputs
from app.direct import DirectRoute, direct
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.kit import conditions
from app.kit import x509 as kx
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.paging import PageParams, plain_page
from app.preconditions import IfMatch, tag
from app.problems import Forbidden, NotFound, RuleViolation, responses
from app.schemas import Condition, Instant, ModelResponse, Text, WarningOut, page_json
from app.servers.software import SniUnsupported

router = APIRouter(prefix="/v1/certificates", tags=["certificates"], route_class=IdempotentRoute)

MATERIAL_ERRORS = (*errors.MATERIAL_ERRORS, MaterialBusy)


class InvalidHostname(RuleViolation):
    """A name is not a valid host name (or wildcard) for a certificate."""

    code, title = "invalid_name", "Not a valid host name"


async def get_service(session: Session, ctx: Context) -> CertificateService:
    return CertificateService(CertificateRepository(session), ctx.master_key, ctx.trust)


Service = Annotated[CertificateService, Depends(get_service)]


def certificate_fields(cert, usages: list[Usage], trust: Trust) -> dict:
    """``CertificateOut``'s fields of a certificate (a listed row or the model), in the model's
    order and with the values the model would hold: the list encodes these as they are
    (app.schemas.JsonResponse), the other routes validate them into the model."""
    error = conditions.read(cert.renewal_error, at=cert.updated_at)
    return {
        "id": cert.id, "name": cert.name, "account_id": cert.account_id, "subject": cert.subject,
        "issuer": cert.issuer, "serial": cert.serial, "sans": list(cert.sans), "not_before": cert.not_before,
        "not_after": cert.not_after, "fingerprint_sha256": cert.fingerprint_sha256, "key_type": cert.key_type,
        "key_bits": cert.key_bits, "self_signed": bool(cert.self_signed), "trusted": trust.trusted,
        "trust": {"trusted": trust.trusted, "reason": trust.reason, "detail": trust.detail},
        "chain_length": cert.chain_length, "source": cert.source, "revision": cert.revision,
        "bindings": [{"kind": u.kind, "service": u.service, "hostname": u.hostname, "domain": u.domain,
                      "server_id": u.server_id} for u in usages],
        "renewal_at": cert.renewal_at, "renewal_status": cert.renewal_status,
        # A stored condition may be in an older shape or order: the model's reading of it.
        "renewal_error": None if error is None else Condition.model_validate(error).model_dump(mode="json"),
        "created_at": cert.created_at, "updated_at": cert.updated_at,
    }


def to_out(cert: Certificate, usages: list[Usage], trust: Trust) -> CertificateOut:
    return CertificateOut.model_validate(certificate_fields(cert, usages, trust))


async def _one(service: CertificateService, cert: Certificate, response: Response | None = None,
               created: bool = False) -> CertificateOut:
    """The certificate as shown, its ETag on ``response`` (a new one also its Location)."""
    if response is not None:
        tag(response, service.etag(cert))
        if created:
            response.headers["Location"] = f"/v1/certificates/{cert.id}"
    return to_out(cert, (await service.usages_of([cert]))[cert.id], (await service.trust_of([cert]))[cert.id])


CHAIN_DIFFERS = (
    "This certificate was already stored (same fingerprint) with another chain; the stored one is kept. "
    "Replace its material with PUT /v1/certificates/{id} to serve the new chain."
)


async def uploaded_response(service: CertificateService, stored: Stored, ctx) -> ModelResponse:
    """201 with the new certificate, or 200 with the one the owner already had.

    An identical upload is not an error (a panel retrying, or a user uploading the file they
    already did): it answers like a successful creation whose result already existed, 200
    with that certificate, ``already_existed: true`` and ``Content-Location`` naming it
    (RFC 9110 section 8.7: the content is the current representation of that resource).
    303 See Other (RFC 9110 section 15.4.4) would make every client fetch the certificate a
    second time, and a 409 would make them handle an error for what is a success.
    """
    cert = stored.certificate
    out = await _one(service, cert)
    trust = Trust(out.trust.trusted, out.trust.reason, out.trust.detail)
    warnings = [WarningOut(code=w.code, message=w.message)
                for w in upload_warnings(cert, trust, utc_now(), ctx.settings.expiring_days)]
    if stored.chain_differs:
        warnings.append(WarningOut(code="chain_differs", message=CHAIN_DIFFERS.format(id=cert.id)))
    body = CertificateUploadOut(**out.model_dump(), already_existed=stored.existed, warnings=warnings)
    response = ModelResponse(body, status_code=200 if stored.existed else 201)
    response.headers["Content-Location"] = f"/v1/certificates/{cert.id}"
    if not stored.existed:
        response.headers["Location"] = f"/v1/certificates/{cert.id}"
    tag(response, service.etag(cert))
    return response


UPLOAD_RESPONSES = {200: {"model": CertificateUploadOut, "description": "The owner already had this certificate "
                          "(same fingerprint): it is returned, nothing is stored."}}


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


@router.post("", operation_id="createCertificate", response_description="The certificate, stored (new)",
    summary="Upload a certificate and its key (PEM)",
    status_code=201, dependencies=[IDEMPOTENT], response_model=CertificateUploadOut,
    responses={**responses(*MATERIAL_ERRORS, Forbidden, UnknownAccount), **UPLOAD_RESPONSES})
async def upload_certificate(body: CertificateUpload, caller: CurrentCaller, service: Service, ctx: Context):
    """Store a certificate with its private key (PEM). The key is encrypted and never returned.

    201 with `warnings` (expired, expiring, untrusted, self-signed: accepted, as binding accepts
    what clients merely warn about; an expired certificate cannot be bound). The same certificate
    (same fingerprint) uploaded again by the same owner returns the existing one with 200 and
    `already_existed: true`."""
    owner = caller.owner_for_new(body.account_id)
    mat = await _read_pem(ctx, body)
    return await uploaded_response(service, await service.store_upload(mat, account_id=owner, name=body.name,
                                                                       caller=caller), ctx)


@router.post("/import", operation_id="importCertificate", response_description="The certificate, stored (new)",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": {
        "certificate": ex.CERTIFICATE_PEM, "private_key": ex.PRIVATE_KEY_PEM, "name": "example.com 2026"}}}}},
    summary="Import a certificate from files (PEM or PKCS#12)",
    status_code=201, dependencies=[IDEMPOTENT], response_model=CertificateUploadOut,
    responses={**responses(*MATERIAL_ERRORS, Forbidden, UnknownAccount), **UPLOAD_RESPONSES})
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
    """Store a certificate from files: PEM files, or one PKCS#12 archive with its password.

    Answers as the PEM upload does: 201 with `warnings`, or 200 with the owner's existing
    certificate of the same fingerprint."""
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
    return await uploaded_response(service, await service.store_upload(mat, account_id=owner, name=name,
                                                                       caller=caller), ctx)


@router.post("/self-signed", operation_id="createSelfSignedCertificate", response_description="The certificate, generated and stored",
    summary="Generate a self-signed certificate",
    status_code=201, dependencies=[IDEMPOTENT], response_model=CertificateOut, responses=responses(InvalidHostname, Forbidden, UnknownAccount))
async def create_self_signed(body: SelfSignedCreate, caller: CurrentCaller, service: Service, response: Response):
    """Generate an ECDSA P-256 self-signed certificate for `names` (clients will warn)."""
    owner = caller.owner_for_new(body.account_id)
    try:
        names = list(dict.fromkeys(normalise_hostname(n, allow_wildcard=True) for n in body.names))
    except InvalidName as exc:
        raise InvalidHostname(str(exc)) from None
    mat = material.self_signed(names, days=body.days)
    cert = await service.store(mat, account_id=owner, name=body.name, source="self-signed", caller=caller)
    return await _one(service, cert, response, created=True)


async def get_reads(reader: Reader, ctx: Context) -> CertificateService:
    """The service over a bare connection (app.deps.get_reader), for the list's reads."""
    return CertificateService(CertificateRepository(reader), ctx.master_key, ctx.trust)


CertificateReads = Annotated[CertificateService, Depends(get_reads)]
_SERVICES = (None, "webmail", "mail", "both")


async def _list_inputs(request: Request) -> dict | None:
    """The list's arguments when its query is plain (app/direct.py): paging as ``plain_page``
    reads it, ``sort`` and ``service`` one of their values, no ``expires_before`` (a time to
    parse). None leaves the rest to FastAPI's solver."""
    query = request.query_params
    page = plain_page(query)
    sort, service = query.get("sort", "created_at"), query.get("service")
    if page is None or sort not in SORTS or service not in _SERVICES or "expires_before" in query:
        return None
    ctx, reader, caller = await read_inputs(request)
    return {"caller": caller, "certificates": await get_reads(reader, ctx), "page": page,
            "covers": query.getlist("covers") or None, "usable_for": query.get("usable_for"), "service": service,
            "expires_before": None, "account_id": query.get("account_id"), "sort": sort}


@direct(_list_inputs)
async def list_certificates(
    caller: ReadingCaller,
    certificates: CertificateReads,
    page: PageParams,
    covers: Annotated[list[str] | None, Query(
        description="Only certificates that cover this host name (RFC 9525 matching, one-label wildcards); "
        "repeat it (`covers=a&covers=b`) for certificates that cover all of them.",
        examples=[["webmail.example.com"]])] = None,
    usable_for: Annotated[str | None, Query(
        description="The certificate picker: only certificates that can serve this domain's `service` now: in "
        "date, covering webmail.<domain> and/or mail.<domain>, and, when certpost knows the domain, of the "
        "domain's account or the platform's (what a bind accepts). Expired certificates are never offered. "
        "For `service` `mail` or `both` on a server whose software cannot serve per-domain mail "
        "certificates, 409 `sni_unsupported` (as the bind would answer), with `advice` and "
        "`recommended_client_hostname`; ask for `service=webmail` there.",
        examples=["example.com"])] = None,
    service: Annotated[Literal["webmail", "mail", "both"] | None, Query(
        description="With `usable_for`: the host names to cover (webmail.<d>, mail.<d>, or both; default both).",
        examples=["both"])] = None,
    expires_before: Annotated[Instant | None, Query(
        description="Only those whose `not_after` is earlier than this time (RFC 3339; UTC when no offset).")] = None,
    account_id: Annotated[str | None, Query(
        description="Only this account's certificates. A customer sees only its own account's whatever it "
        "names here (another account: an empty list).")] = None,
    sort: Annotated[Literal["created_at", "not_after", "-not_after"], Query(
        description="Order: created_at (oldest first, the default), not_after (soonest expiry first) or "
        "-not_after (latest expiry first); ties by id. A cursor is valid for the order it came from.",
        examples=["-not_after"])] = "created_at",
):
    """Certificates the caller may see, in the chosen order (`sort`), each with where it is bound and
    whether it is trusted now. Filter by names they cover (`covers`), by what can serve a domain now
    (`usable_for`, the certificate picker), by expiry (`expires_before`) and by account. A customer
    sees its own account's certificates only. Cursor-paginated: pass `next_cursor` back as `cursor`.
    The picker refuses what a bind would refuse: mail (or both) of a domain whose server cannot
    serve per-domain mail certificates is 409 `sni_unsupported`, with the server's host name for
    mail clients in `recommended_client_hostname`."""
    found = await certificates.list(
        caller,
        covers_names=covers,
        usable_for=usable_for,
        service=service,
        expires_before=expires_before,
        account_id=account_id,
        sort=sort,
        page=page,
    )
    return page_json(found, [certificate_fields(c, found.usages[c.id], found.trust[c.id]) for c in found.items])


# Declared here, where a decorator would have added it: the OpenAPI document keeps its order.
router.add_api_route("", list_certificates, methods=["GET"], route_class_override=DirectRoute,
                     operation_id="listCertificates", response_description="A page of certificates",
                     summary="List certificates", response_model=CertificatePage,
                     responses=responses(InvalidCursor, InvalidFilter, NotFound, SniUnsupported))


@router.get("/{certificate_id}", operation_id="getCertificate", response_description="The certificate",
    summary="Get a certificate",
    response_model=CertificateOut, responses=responses(NotFound))
async def get_certificate(certificate_id: str, caller: CurrentCaller, service: Service, response: Response):
    """One certificate: subject, names, validity, key, trust and where it is bound, with its `ETag`
    for a later `If-Match`. Never the private key."""
    return await _one(service, await service.get_visible(caller, certificate_id), response)


@router.put(
    "/{certificate_id}", operation_id="replaceCertificate", response_description="The certificate with its new material",
    summary="Replace a certificate's material",
    response_model=CertificateOut,
    responses=responses(NotFound, errors.HostnameNotCovered, errors.CertificateExpired, errors.CertificateServerWide,
                        errors.CertificateNotYetValid, errors.CertificateExists, *MATERIAL_ERRORS),
)
async def replace_certificate(certificate_id: str, body: CertificateMaterialIn, caller: CurrentCaller, service: Service,
                              ctx: Context, expected: IfMatch, response: Response):
    """Replace the material (certificate and key). Bindings stay; `revision` goes up; servers redeploy."""
    await service.get_visible(caller, certificate_id)
    mat = await _read_pem(ctx, body)
    return await _one(service, await service.replace(caller, certificate_id, mat, body.name, expected), response)


@router.delete("/{certificate_id}", operation_id="deleteCertificate", response_description="Deleted",
    summary="Delete a certificate",
    status_code=204, responses=responses(NotFound, errors.CertificateInUse))
async def delete_certificate(certificate_id: str, caller: CurrentCaller, service: Service, expected: IfMatch):
    """Delete a certificate and its key. Refused while it is bound anywhere (409 `certificate_in_use`,
    with `bindings`); with `If-Match`, only while it is still in that state (412 otherwise)."""
    await service.delete(caller, certificate_id, expected)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

