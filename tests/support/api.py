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


async def list_all(client: httpx.AsyncClient, path: str, headers: dict, **params) -> list[dict]:
    """Every row of a list operation, following ``next_cursor`` page by page."""
    return [row async for row in iter_rows(client, path, headers, **params)]


async def iter_rows(client: httpx.AsyncClient, path: str, headers: dict, **params):
    cursor = None
    while True:
        response = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        for row in page["items"]:
            yield row
        cursor = page["next_cursor"]
        if cursor is None:
            return


def list_all_sync(api: httpx.Client, path: str, **params) -> list[dict]:
    """``list_all`` for a blocking client whose headers are set (the fleet's and the resilience tests')."""
    rows, cursor = [], None
    while True:
        response = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    return body
