"""The request-signature profile (RFC 9421 with an RFC 9530 Content-Digest), without a network."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import (
    SignatureError,
    content_digest,
    load_or_create_private_key,
    public_key_from_text,
    public_key_to_text,
    sign_request,
    verify_request,
)

NOW = 1_700_000_000.0
KEY = Ed25519PrivateKey.generate()
BODY = b'{"generation": 7}'


def signed(method="PUT", path="/v1/config", body=BODY, **kw):
    return sign_request(KEY, method, path, body, now=kw.pop("now", NOW), **kw)


def verify(headers, method="PUT", path="/v1/config", body=BODY, now=NOW, key=None):
    return verify_request((key or KEY).public_key(), method, path, headers, body, now=now)


def test_round_trip():
    headers = signed(nonce="n-1", key_id="controller")
    result = verify(headers)
    assert (result.nonce, result.created, result.key_id) == ("n-1", int(NOW), "controller")
    assert headers["Content-Digest"] == content_digest(BODY)
    assert headers["Signature-Input"].startswith(
        'sig1=("@method" "@path" "@query" "content-digest");created='
    )
    assert headers["Signature"].startswith("sig1=:") and headers["Signature"].endswith(":")


def test_rfc9530_digest_format():
    # RFC 9530 appendix: sha-256 of '{"hello": "world"}\n'
    assert (
        content_digest(b'{"hello": "world"}\n')
        == "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    )


def test_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in signed().items()}
    verify(headers)


@pytest.mark.parametrize("missing", ["Content-Digest", "Signature-Input", "Signature"])
def test_missing_header(missing):
    headers = signed()
    del headers[missing]
    with pytest.raises(SignatureError) as err:
        verify(headers)
    assert err.value.reason == "signature_missing"


def test_body_changed():
    with pytest.raises(SignatureError) as err:
        verify(signed(), body=b'{"generation": 8}')
    assert err.value.reason == "digest_mismatch"


def test_digest_and_body_swapped_together():
    headers = signed() | {"Content-Digest": content_digest(b"{}")}
    with pytest.raises(SignatureError) as err:
        verify(headers, body=b"{}")
    assert err.value.reason == "signature_invalid"


@pytest.mark.parametrize(
    "method,path", [("GET", "/v1/config"), ("PUT", "/v1/state"), ("PUT", "/v1/config?x=1")]
)
def test_method_path_and_query_are_covered(method, path):
    with pytest.raises(SignatureError) as err:
        verify(signed(), method=method, path=path)
    assert err.value.reason == "signature_invalid"


def test_query_is_signed():
    headers = signed(path="/v1/state?verbose=1")
    verify(headers, path="/v1/state?verbose=1")
    with pytest.raises(SignatureError):
        verify(headers, path="/v1/state?verbose=2")


def test_other_key():
    with pytest.raises(SignatureError) as err:
        verify(signed(), key=Ed25519PrivateKey.generate())
    assert err.value.reason == "signature_invalid"


@pytest.mark.parametrize("field", ["nonce", "created", "keyid"])
def test_parameters_are_covered(field):
    headers = signed(nonce="abc")
    replaced = {
        "nonce": ('nonce="abc"', 'nonce="abd"'),
        "created": (f"created={int(NOW)}", f"created={int(NOW) + 1}"),
        "keyid": ('keyid="controller"', 'keyid="other"'),
    }[field]
    headers["Signature-Input"] = headers["Signature-Input"].replace(*replaced)
    with pytest.raises(SignatureError) as err:
        verify(headers)
    assert err.value.reason == "signature_invalid"


def test_fewer_components_refused():
    headers = signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace(' "content-digest"', "")
    with pytest.raises(SignatureError) as err:
        verify(headers)
    assert err.value.reason == "signature_invalid"


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_or_future_timestamp(skew):
    with pytest.raises(SignatureError) as err:
        verify(signed(), now=NOW + skew)
    assert err.value.reason == "signature_expired"


def test_within_skew():
    verify(signed(), now=NOW + 299)


def test_garbage_signature():
    headers = signed() | {"Signature": "sig1=:" + base64.b64encode(b"x" * 64).decode() + ":"}
    with pytest.raises(SignatureError):
        verify(headers)
    with pytest.raises(SignatureError):
        verify(signed() | {"Signature": "sig1=not-base64"})


def test_public_key_text_round_trip():
    text = public_key_to_text(KEY.public_key())
    assert text.startswith("ed25519:")
    verify(signed(), key=None)
    assert public_key_to_text(public_key_from_text(text)) == text
    with pytest.raises(ValueError):
        public_key_from_text("rsa:AAAA")
    with pytest.raises(ValueError):
        public_key_from_text("ed25519:AAAA")


def test_load_or_create_private_key(tmp_path):
    path = tmp_path / "keys" / "controller.pem"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_private_key(path)
    assert public_key_to_text(again.public_key()) == public_key_to_text(key.public_key())
