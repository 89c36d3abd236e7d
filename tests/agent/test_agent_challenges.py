"""HTTP-01 answers (RFC 8555 section 8.3) published through the agent and served by real nginx.

The controller PUTs a key authorization; nginx serves it on the plain-HTTP port for any Host at
``/.well-known/acme-challenge/<token>`` without a reload; DELETE withdraws it.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

pytestmark = pytest.mark.daemons

THUMBPRINT = "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"


def well_known(stack, token: str, host: str = "webmail.a.test") -> httpx.Response:
    url = f"http://127.0.0.1:{stack.ports['http']}/.well-known/acme-challenge/{token}"
    return httpx.get(url, headers={"Host": host}, timeout=10)


def put(client, token: str, body: dict, **kwargs) -> httpx.Response:
    return client.request(
        "PUT", f"/v1/acme-challenges/{token}", json.dumps(body).encode(), **kwargs
    )


def nginx_log_size(stack) -> int:
    return (stack.nginx_dir / "error.log").stat().st_size


def test_publish_serve_and_withdraw(agent_client, mail_stack):
    stack, _ = mail_stack
    token = secrets.token_urlsafe(32)
    key_authorization = f"{token}.{THUMBPRINT}"
    assert well_known(stack, token).status_code == 404
    state = agent_client.state()
    log_start = nginx_log_size(stack)

    response = put(
        agent_client, token, {"key_authorization": key_authorization, "names": ["webmail.a.test"]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"token": token, "published": True}

    for host in ("webmail.a.test", "mail.b.test", "unknown.example.test"):
        served = well_known(stack, token, host)
        assert served.status_code == 200, (host, served.text)
        assert served.content == key_authorization.encode()
        assert served.headers["content-type"] == "application/octet-stream"
    # anything else on the plain-HTTP port is 404
    other = httpx.get(f"http://127.0.0.1:{stack.ports['http']}/", timeout=10)
    assert other.status_code == 404

    # publishing again replaces the answer
    again = f"{token}.{THUMBPRINT[::-1]}"
    assert put(agent_client, token, {"key_authorization": again}).status_code == 200
    assert well_known(stack, token).content == again.encode()

    response = agent_client.request("DELETE", f"/v1/acme-challenges/{token}")
    assert response.status_code == 200, response.text
    assert response.json() == {"token": token, "published": False}
    assert well_known(stack, token).status_code == 404
    gone = agent_client.request("DELETE", f"/v1/acme-challenges/{token}")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert gone.headers["content-type"].startswith("application/problem+json")

    # no reload, no new generation
    log = (stack.nginx_dir / "error.log").read_bytes()[log_start:].decode(errors="replace")
    assert "reconfiguring" not in log and "SIGHUP" not in log
    assert agent_client.state() == state


def test_unsigned_and_invalid_requests(agent_client, mail_stack):
    stack, _ = mail_stack
    token = secrets.token_urlsafe(16)
    body = {"key_authorization": f"{token}.{THUMBPRINT}", "names": ["webmail.a.test"]}

    unsigned = put(agent_client, token, body, sign=False)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "signature_missing"
    unsigned_delete = agent_client.request("DELETE", f"/v1/acme-challenges/{token}", sign=False)
    assert unsigned_delete.status_code == 401
    assert well_known(stack, token).status_code == 404

    for bad in ("a" * 129, "bad.token", "bad~token", "bad=token", "bad+token", "b,d"):
        response = put(agent_client, bad, {"key_authorization": f"{bad}.{THUMBPRINT}"})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["code"] == "invalid_token"
        assert response.headers["content-type"].startswith("application/problem+json")
    response = agent_client.request("DELETE", "/v1/acme-challenges/bad.token")
    assert response.status_code == 400 and response.json()["code"] == "invalid_token"

    for wrong in (
        {"key_authorization": f"other.{THUMBPRINT}"},  # not this token's
        {"key_authorization": token},  # no thumbprint
        {"key_authorization": f"{token}.{THUMBPRINT}\n<html>"},
        {"key_authorization": f"{token}.{THUMBPRINT}", "names": ["*.a.test"]},
        {"key_authorization": f"{token}.{THUMBPRINT}", "extra": 1},
        {},
    ):
        response = put(agent_client, token, wrong)
        assert response.status_code == 400, (wrong, response.text)
        assert response.json()["code"] == "invalid_request"
    assert well_known(stack, token).status_code == 404
