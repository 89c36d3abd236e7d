"""How much work a password-protected key asks for, read from its ASN.1 before decrypting.

Decrypting an encrypted PKCS#8 key (RFC 5958, RFC 8018) or opening a PKCS#12 file (RFC 7292)
derives keys with an iteration count that the *file* chooses: a count of 30 million costs about
10 s of CPU before the password is even checked. So the counts are read first, and refused over
``MAX_ITERATIONS``.

What real tools write, and so why the cap is 100,000:

* OpenSSL 1.1/3.x ``pkcs8 -topk8``, ``pkcs12 -export``, and Python's ``cryptography``: 2,048
  (PBKDF2, PKCS#12 PBE and the MAC); ``cryptography``'s PKCS#12 "best available": 20,000.
* Windows (certutil, the certificate export wizard, PowerShell ``Export-PfxCertificate``): 2,000.
* Java ``keytool`` (JDK 8u301+, 11.0.12+, 17): 10,000 for the key, the certificates and the MAC.
* macOS Keychain Access exports: legacy 3DES PBE with a count in the low thousands (from
  published descriptions; not measured here, no macOS on this machine).

The OpenSSL and ``cryptography`` figures were read from files they wrote here; Windows and Java
from their documentation. 100,000 is five times the largest of these and still costs well under a
second per derivation.
scrypt (``openssl pkcs8 -scrypt``, RFC 7914) is accepted up to N·r·p = 2^18 (twice OpenSSL's
default N = 2^14, r = 8, p = 1), which bounds its CPU, and its memory (128·N·r bytes) to 32 MiB.

The reader is a minimal DER walker (X.690): it looks at every AlgorithmIdentifier it can see,
descending into OCTET STRINGs that hold DER (PKCS#12's authenticated safe). Content that is
itself encrypted cannot be seen before decryption; its outer layer is still capped.
"""

from __future__ import annotations

import base64
import re

from app.kit.keypolicy import MAX_KEY_DER_BYTES, KeyTooLarge
from app.kit.x509 import MaterialError

MAX_ITERATIONS = 100_000
MAX_SCRYPT_WORK = (1 << 15) * 8
_MAX_DEPTH = 24
_MAX_NODES = 20_000

_PKCS5 = "1.2.840.113549.1.5."
PBKDF2 = _PKCS5 + "12"
PBMAC1 = _PKCS5 + "14"
SCRYPT = "1.3.6.1.4.1.11591.4.11"
_PBES1 = {_PKCS5 + n for n in ("1", "3", "4", "6", "10", "11")}
_PKCS12_PBE = {f"1.2.840.113549.1.12.1.{n}" for n in range(1, 7)}
_KEY_BAGS = {"1.2.840.113549.1.12.10.1.1", "1.2.840.113549.1.12.10.1.2"}  # keyBag, pkcs8ShroudedKeyBag
_BAG_OVERHEAD = 256  # encryption parameters around the key


class TooManyIterations(MaterialError):
    code = "key_iterations_too_high"


class _Node:
    __slots__ = ("children", "tag", "value")

    def __init__(self, tag: int, value: bytes, children: list[_Node] | None):
        self.tag, self.value, self.children = tag, value, children


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0


def _parse(data: bytes, budget: _Budget, depth: int = 0) -> list[_Node] | None:
    """Parse a run of DER TLVs; None when ``data`` is not exactly that."""
    out: list[_Node] = []
    pos, end = 0, len(data)
    while pos < end:
        budget.nodes += 1
        if budget.nodes > _MAX_NODES or pos + 2 > end:
            return None
        tag = data[pos]
        if tag & 0x1F == 0x1F:  # high tag numbers do not occur in these structures
            return None
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > end:
                return None
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + length > end:
            return None
        value = data[pos:pos + length]
        pos += length
        children = None
        if tag & 0x20 and depth < _MAX_DEPTH:
            children = _parse(value, budget, depth + 1)
            if children is None:
                return None
        elif tag == 0x04 and value[:1] == b"\x30" and depth < _MAX_DEPTH:
            children = _parse(value, budget, depth + 1)  # DER inside an OCTET STRING, or just bytes
        out.append(_Node(tag, value, children))
    return out


def _oid(value: bytes) -> str:
    parts: list[int] = []
    acc = 0
    for byte in value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(acc)
            acc = 0
    if not parts:
        return ""
    first = min(parts[0] // 40, 2)
    return ".".join(str(p) for p in [first, parts[0] - 40 * first, *parts[1:]])


def _int(node: _Node | None) -> int | None:
    if node is None or node.tag != 0x02 or not node.value:
        return None
    return int.from_bytes(node.value, "big", signed=True)


def _ints(params: _Node) -> list[int]:
    return [v for v in (_int(c) for c in params.children or []) if v is not None]


def _check_algorithm(oid: str, params: _Node | None) -> None:
    if params is None:
        return
    if oid in _KEY_BAGS and len(params.value) > MAX_KEY_DER_BYTES + _BAG_OVERHEAD:
        raise KeyTooLarge(
            f"the PKCS#12 key is {len(params.value)} bytes; keys above RSA-8192 are not accepted"
        )
    if params.tag != 0x30:
        return
    if oid == PBKDF2 or oid in _PBES1 or oid in _PKCS12_PBE:
        counts = _ints(params)
        count = counts[0] if counts else 1
        _refuse_over(count, "key derivation")
    elif oid == SCRYPT:
        n, r, p = ([*_ints(params), 0, 0, 0])[:3]
        if n * r * p > MAX_SCRYPT_WORK or n * r > MAX_SCRYPT_WORK or min(n, r, p) < 1:
            raise TooManyIterations(
                f"the key uses scrypt with N={n}, r={r}, p={p}; at most N*r*p = {MAX_SCRYPT_WORK} is accepted "
                "(OpenSSL's default is N=16384, r=8, p=1; or re-export with PBKDF2: `openssl pkcs8 -topk8`)"
            )


def _refuse_over(count: int, what: str) -> None:
    if count > MAX_ITERATIONS or count < 1:
        raise TooManyIterations(
            f"the {what} asks for {count} iterations; at most {MAX_ITERATIONS:,} are accepted "
            "(OpenSSL writes 2,048, Windows 2,000, Java keytool 10,000; re-export with a usual count)"
        )


def _walk(nodes: list[_Node]) -> None:
    for node in nodes:
        kids = node.children
        if not kids:
            continue
        if node.tag == 0x30 and kids[0].tag == 0x06:
            _check_algorithm(_oid(kids[0].value), kids[1] if len(kids) > 1 else None)
        _walk(kids)


def check_der(der: bytes) -> None:
    """Refuse DER (encrypted PKCS#8 or PKCS#12) that asks for more work than the caps allow."""
    nodes = _parse(der, _Budget())
    if not nodes:
        return  # not DER this reader understands: the real parser will say so
    _walk(nodes)
    top = nodes[0]
    # PKCS#12: PFX ::= SEQUENCE { version, authSafe, macData MacData OPTIONAL } (RFC 7292 section 4)
    if top.tag == 0x30 and top.children and len(top.children) >= 3 and _int(top.children[0]) == 3:
        mac = top.children[2]
        if mac.tag == 0x30 and mac.children and len(mac.children) >= 2:
            iterations = _int(mac.children[2]) if len(mac.children) > 2 else 1
            _refuse_over(iterations if iterations is not None else 1, "PKCS#12 MAC")


_PEM_ENCRYPTED = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----(.*?)-----END ENCRYPTED PRIVATE KEY-----", re.DOTALL)


def check_pem(pem: bytes) -> None:
    """Refuse an encrypted PKCS#8 PEM key whose key derivation asks for too much work.

    Legacy OpenSSL encryption (``Proc-Type: 4,ENCRYPTED``) derives with one MD5 round: no cap needed.
    """
    for match in _PEM_ENCRYPTED.finditer(pem):
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=False)
        except ValueError:
            continue
        check_der(der)
