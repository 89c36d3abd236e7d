"""Small helpers to drive the public API in tests."""

from __future__ import annotations

import httpx

from tests.support.pki import Issued


def upload_body(issued: Issued, **extra) -> dict:
    body = {"certificate_pem": issued.cert_pem, "private_key_pem": issued.key_pem}
    if issued.chain_pem:
        body["chain_pem"] = issued.chain_pem
    body.update(extra)
    return body


async def upload(client: httpx.AsyncClient, headers: dict, issued: Issued, **extra) -> dict:
    response = await client.post("/v1/certificates", json=upload_body(issued, **extra), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def create_server(client, headers, name="mx1", hostname="mx1.hosting.test", software="postfix-dovecot", **extra) -> dict:
    response = await client.post(
        "/v1/servers", json={"name": name, "hostname": hostname, "software": software, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def create_domain(client, headers, name, server_id, account_id) -> dict:
    response = await client.post(
        "/v1/domains", json={"name": name, "server_id": server_id, "account_id": account_id}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    return body
