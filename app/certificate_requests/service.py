"""Certificate requests: a key generated and sealed here, its CSR given to a CA, and the issued
certificate paired with that key when it is imported.

The key is treated as an uploaded key is: sealed with the master key (app/kit/crypto.py, the
row's id as associated data) before it reaches the database, never returned, and moved into the
certificate (sealed again under the certificate's id) by the import, which goes through the
same upload rules as any upload (app/certificates/material.py) with the request's key in place
of a submitted one. The request then keeps no key.
"""

from __future__ import annotations

import ipaddress

from app.accounts.caller import Caller
from app.certificate_requests import csr
from app.certificate_requests.errors import InvalidRequestName, RequestCompleted, RequestKeyMismatch
from app.certificate_requests.models import CertificateRequest
from app.certificate_requests.repository import CertificateRequestRepository
from app.certificates import errors as cert_errors
from app.certificates.reading import MaterialReader
from app.certificates.service import CertificateService, Stored
from app.db import new_id
from app.events import EventKind, record
from app.kit import x509 as kx
from app.kit.coverage import wildcard_on_public_suffix
from app.kit.crypto import MasterKey, Sealed
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.paging import PageRequest, Window


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def requested_names(names: list[str]) -> list[str]:
    """The names as A-labels, in the given order, without repeats (the first is the CN). A
    wildcard directly on a public suffix (`*.co.uk`) is refused: no CA issues it (CA/Browser
    Forum Baseline Requirements 3.2.2.6) and no client would accept it."""
    try:
        wanted = list(dict.fromkeys(normalise_hostname(n, allow_wildcard=True) for n in names))
    except InvalidName as exc:
        raise InvalidRequestName(str(exc)) from None
    for name in wanted:
        if _is_ip_literal(name):
            # A dNSName holding an address is not a name (RFC 5280 4.2.1.6: addresses go in an
            # iPAddress SAN) and CAs refuse it (Baseline Requirements 7.1.2.7.12).
            raise InvalidRequestName(f"{name} is an IP address, not a host name")
        if wildcard_on_public_suffix(name):
            raise cert_errors.WildcardPublicSuffix(f"{name} is a wildcard on a public suffix", hostname=name)
    return wanted


class CertificateRequestService:
    def __init__(self, repo: CertificateRequestRepository, certificates: CertificateService, master_key: MasterKey,
                 reader: MaterialReader):
        self.repo = repo
        self.certificates = certificates
        self.master_key = master_key
        self.reader = reader

    async def create(self, caller: Caller, *, names: list[str], key_type: str, name: str | None,
                     account_id: str | None) -> CertificateRequest:
        owner = caller.owner_for_new(account_id)
        wanted = requested_names(names)
        await self.certificates.check_account(owner)
        # RSA generation holds the GIL for up to seconds: a worker process does it.
        key_pem, csr_pem, spki = await self.reader.generate(csr.new_request, key_type, wanted)
        row = CertificateRequest(id=new_id(), account_id=owner, name=name, names=wanted, key_type=key_type,
                                 csr_pem=csr_pem, public_key_sha256=spki, status="pending")
        sealed = self.master_key.seal(key_pem, row.id)
        row.key_ciphertext, row.key_wrapped, row.master_key_id = (sealed.ciphertext, sealed.wrapped_key,
                                                                  sealed.master_key_id)
        await self.repo.add(row)
        record(self.repo.session, EventKind.CERTIFICATE_REQUEST_CREATED, caller, account_id=owner,
               subjects={"certificate_request": row.id},
               data={"names": wanted, "key_type": key_type, "public_key_sha256": spki})
        return row

    async def get_visible(self, caller: Caller, request_id: str) -> CertificateRequest:
        return caller.visible(await self.repo.get(request_id), "certificate request")

    async def list(self, caller: Caller, *, account_id: str | None, status: str | None,
                   page: PageRequest) -> Window[CertificateRequest]:
        visible = caller.visible_rows(CertificateRequest.account_id, requested=account_id)
        return await self.repo.list(visible, status, page)

    async def delete(self, caller: Caller, request_id: str) -> None:
        """Forget a request and its key (a completed one's certificate stays)."""
        row = await self.get_visible(caller, request_id)
        await self.repo.delete(row)
        record(self.repo.session, EventKind.CERTIFICATE_REQUEST_DELETED, caller, account_id=row.account_id,
               subjects={"certificate_request": row.id}, data={"names": list(row.names), "status": row.status})

    async def complete(self, caller: Caller, request_id: str, *, certificate_pem: str, chain_pem: str | None,
                       name: str | None) -> Stored:
        """Pair the certificate a CA issued with the request's key and store it as an upload.

        The public keys are compared first (SPKI, from the certificate alone), so a wrong
        certificate is refused with its own code before the key is unsealed or read."""
        row = await self.get_visible(caller, request_id)
        if row.status != "pending":
            raise RequestCompleted(f"certificate request {row.id} is completed: certificate {row.certificate_id}")
        try:
            leaf = kx.load_pem_certificates(certificate_pem)[0]
        except kx.MaterialError as exc:
            raise cert_errors.from_material_error(exc) from None
        if csr.spki_sha256(leaf.public_key()) != row.public_key_sha256:
            raise RequestKeyMismatch(
                f"the certificate's public key (SHA-256 {csr.spki_sha256(leaf.public_key())}) is not the key of "
                f"this request ({row.public_key_sha256})")
        key_pem = self.master_key.open(Sealed(row.key_ciphertext, row.key_wrapped, row.master_key_id), row.id)
        try:
            material = await self.reader.from_pem(certificate_pem, key_pem, chain_pem=chain_pem)
        except kx.MaterialError as exc:
            raise cert_errors.from_material_error(exc) from None
        stored = await self.certificates.store_upload(material, account_id=row.account_id, name=name or row.name,
                                                      caller=caller)
        if not await self.repo.complete(row, stored.certificate.id, utc_now()):
            raise RequestCompleted(f"certificate request {row.id} was completed by another request meanwhile")
        record(self.repo.session, EventKind.CERTIFICATE_REQUEST_COMPLETED, caller, account_id=row.account_id,
               subjects={"certificate_request": row.id, "certificate": stored.certificate.id},
               data={"names": list(row.names), "fingerprint_sha256": stored.certificate.fingerprint_sha256})
        return stored
