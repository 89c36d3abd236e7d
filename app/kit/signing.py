"""Ed25519 request signatures between the controller and its agents.

The scheme is a deliberately small profile of RFC 9421 (HTTP Message Signatures):

* covered components, in this order: ``"@method"``, ``"@path"``, ``"@query"`` (RFC 9421
  section 2.2) and ``"content-digest"`` (RFC 9530 section 2: ``sha-256=:<base64>:`` of the body,
  so the body is covered without putting it in the signature base);
* signature parameters (RFC 9421 section 2.3): ``created`` (integer seconds), ``nonce``,
  ``keyid`` and ``alg="ed25519"``;
* the signature base is built as in RFC 9421 section 2.5 and signed with Ed25519
  (RFC 9421 section 3.3.6, RFC 8032).

Only one label (``sig1``) is produced and accepted, and exactly the component list above is
accepted: a narrow profile is easier to get right than a general structured-field parser.
Freshness is ``created`` within ``max_skew`` seconds (RFC 9421 section 7.2.4 recommends a
window); remembering nonces to refuse replays is the verifier's job (the agent keeps them).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LABEL = "sig1"
COMPONENTS = ('"@method"', '"@path"', '"@query"', '"content-digest"')
DEFAULT_MAX_SKEW = 300
_KEY_PREFIX = "ed25519:"


class SignatureError(Exception):
    """A request whose signature cannot be accepted; ``reason`` is a stable slug.

    Reasons: ``signature_missing``, ``signature_invalid``, ``digest_mismatch``,
    ``signature_expired`` (``created`` outside the allowed window).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


@dataclass(frozen=True)
class SignedRequest:
    """What a verified signature vouches for besides the request itself."""

    key_id: str
    nonce: str
    created: int
    content_digest: str = ""


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value for ``body`` (sha-256 only)."""
    return digest_value(hashlib.sha256(body).digest())


def digest_value(sha256: bytes) -> str:
    """The ``Content-Digest`` value for a SHA-256 computed elsewhere (e.g. over a stream)."""
    return f"sha-256=:{base64.b64encode(sha256).decode()}:"


def _split_target(path: str) -> tuple[str, str]:
    """``@path`` and ``@query`` of a request target (RFC 9421 sections 2.2.6, 2.2.7).

    An absent query is the single character ``?``.
    """
    base, sep, query = path.partition("?")
    return base or "/", "?" + query if sep else "?"


def _params(created: int, nonce: str, key_id: str) -> str:
    """The serialised inner list of RFC 9421 section 2.3 (RFC 8941 inner-list syntax)."""
    for value in (nonce, key_id):
        if not re.fullmatch(r"[\x20-\x7e]*", value) or '"' in value or "\\" in value:
            raise SignatureError("signature_invalid", "nonce and keyid must be plain ASCII")
    return (
        f'({" ".join(COMPONENTS)});created={created};nonce="{nonce}";keyid="{key_id}";alg="ed25519"'
    )


def _signature_base(method: str, path: str, digest: str, params: str) -> bytes:
    at_path, at_query = _split_target(path)
    lines = [
        f'"@method": {method.upper()}',
        f'"@path": {at_path}',
        f'"@query": {at_query}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode()


def sign_request(
    private_key: Ed25519PrivateKey,
    method: str,
    path: str,
    body: bytes,
    *,
    key_id: str = "controller",
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers to add to a request: ``Content-Digest``, ``Signature-Input``, ``Signature``.

    ``path`` is the request target as sent (path plus ``?query``).
    """
    created = int(time.time() if now is None else now)
    nonce = nonce or secrets.token_urlsafe(18)
    digest = content_digest(body)
    params = _params(created, nonce, key_id)
    signature = private_key.sign(_signature_base(method, path, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


_INPUT_RE = re.compile(
    r'^(?P<label>[a-z*][a-z0-9_\-.*]*)=\((?P<components>[^)]*)\)(?P<params>(;[a-z][a-z0-9_\-]*=("[^"\\]*"|-?\d+))*)$'
)
_PARAM_RE = re.compile(r';([a-z][a-z0-9_\-]*)=("[^"\\]*"|-?\d+)')
_SIG_RE = re.compile(r"^(?P<label>[a-z*][a-z0-9_\-.*]*)=:(?P<value>[A-Za-z0-9+/=]*):$")


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value.strip()
    raise SignatureError("signature_missing", f"the {name} header is missing")


def verify_request(
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> SignedRequest:
    """Check a request signed by :func:`sign_request`; raise :class:`SignatureError` if not valid.

    The signature and freshness first (:func:`verify_signature`, headers only), then the body
    against the signed ``Content-Digest`` (RFC 9530): a receiver can so refuse a forged request
    before it reads a byte of the body (the agent does, streaming the body into the digest).
    """
    signed = verify_signature(public_key, method, path, headers, now=now, max_skew=max_skew)
    check_digest(signed, content_digest(body))
    return signed


def check_digest(signed: SignedRequest, body_digest: str) -> None:
    """``body_digest`` (a ``Content-Digest`` value of the body received) is the signed one."""
    if not secrets.compare_digest(signed.content_digest, body_digest):
        raise SignatureError("digest_mismatch", "Content-Digest does not match the body")


def verify_signature(
    public_key: Ed25519PublicKey,
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    max_skew: int = DEFAULT_MAX_SKEW,
) -> SignedRequest:
    """Check the signature over the request head, ``Content-Digest`` included, but not the body.

    Order matters for the reasons reported: missing headers, malformed ones, the signature
    itself, then freshness, checked only after the signature so that an attacker cannot learn
    anything from forged timestamps. The caller must then compare the body's digest with
    ``SignedRequest.content_digest`` (:func:`check_digest`).
    """
    sig_input = _header(headers, "signature-input")
    sig_value = _header(headers, "signature")
    digest = _header(headers, "content-digest")

    parsed = _INPUT_RE.match(sig_input)
    sig_parsed = _SIG_RE.match(sig_value)
    if not parsed or not sig_parsed or parsed["label"] != LABEL or sig_parsed["label"] != LABEL:
        raise SignatureError("signature_invalid", "Signature-Input or Signature is malformed")
    if tuple(parsed["components"].split()) != COMPONENTS:
        raise SignatureError(
            "signature_invalid", "the signature does not cover the required components"
        )
    params = {k: v.strip('"') for k, v in _PARAM_RE.findall(parsed["params"])}
    if (
        params.get("alg", "ed25519") != "ed25519"
        or not {"created", "nonce", "keyid"} <= params.keys()
    ):
        raise SignatureError(
            "signature_invalid", "created, nonce and keyid are required; alg must be ed25519"
        )
    if not params["nonce"]:
        raise SignatureError("signature_invalid", "the nonce is empty")

    created = int(params["created"])
    signed_params = _params(created, params["nonce"], params["keyid"])
    try:
        signature = base64.b64decode(sig_parsed["value"], validate=True)
        public_key.verify(signature, _signature_base(method, path, digest, signed_params))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature_invalid", "the signature does not verify") from None

    current = time.time() if now is None else now
    if abs(current - created) > max_skew:
        raise SignatureError(
            "signature_expired",
            f"created is {int(current - created)} s away from now (max {max_skew})",
        )
    return SignedRequest(
        key_id=params["keyid"], nonce=params["nonce"], created=created, content_digest=digest
    )


def public_key_to_text(public_key: Ed25519PublicKey) -> str:
    """``ed25519:<base64 of the 32 raw bytes>``: one line, easy to paste into a config file."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _KEY_PREFIX + base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    text = text.strip()
    if not text.startswith(_KEY_PREFIX):
        raise ValueError("a public key must look like ed25519:<base64>")
    try:
        raw = base64.b64decode(text[len(_KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError("the ed25519 public key is not 32 bytes of base64") from exc


def load_or_create_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 key, creating it with mode 0600 when the file is missing."""
    file = Path(path)
    if file.exists():
        key = serialization.load_pem_private_key(file.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{file} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


__all__ = [
    "SignatureError",
    "SignedRequest",
    "check_digest",
    "content_digest",
    "digest_value",
    "load_or_create_private_key",
    "public_key_from_text",
    "public_key_to_text",
    "sign_request",
    "verify_request",
    "verify_signature",
]
