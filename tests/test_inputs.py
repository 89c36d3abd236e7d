"""Input the API refuses with a 4xx problem, never a 500, on SQLite and PostgreSQL alike:
control characters in any string, names that are not IDNA 2008 host names, and dates,
cursors and limits that no database column or list can hold."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.api import assert_problem, create_domain, create_server, upload, upload_body


@pytest.fixture
async def hosted(client, admin, customer_headers):
    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    return server, account_id, customer


# --- names (app/kit/names.py) --------------------------------------------------------------

@pytest.mark.parametrize("name", ["evil.test\n.", "evil.test\n", "evil\x00.test", "evil.test\r"])
async def test_domain_name_with_control_characters_is_refused(client, admin, hosted, name):
    server, account_id, _customer = hosted
    r = await client.post("/v1/domains", json={"name": name, "server_id": server["id"],
                                               "account_id": account_id}, headers=admin)
    body = assert_problem(r, 422, "validation_error")
    assert "\n" not in body["detail"] and name not in r.text
    listed = (await client.get("/v1/domains", headers=admin)).json()["items"]
    assert listed == []  # nothing half-written


@pytest.mark.parametrize(("name", "stored"), [("faß.test", "xn--fa-hia.test"),
                                              ("FASS.test", "fass.test"),
                                              ("Bücher.TEST.", "xn--bcher-kva.test")])
async def test_domain_names_are_idna_2008(client, admin, hosted, name, stored):
    server, account_id, _customer = hosted
    domain = await create_domain(client, admin, name, server["id"], account_id)
    assert domain["name"] == stored
    assert (await client.get(f"/v1/domains/{name}", headers=admin)).json()["name"] == stored


@pytest.mark.parametrize("name", ["xn--zz.test", "a_b.test", "ab--cd.test", "x\u200dy.test", "localhost"])
async def test_invalid_domain_names_are_refused(client, admin, hosted, name):
    server, account_id, _customer = hosted
    r = await client.post("/v1/domains", json={"name": name, "server_id": server["id"],
                                               "account_id": account_id}, headers=admin)
    assert_problem(r, 422, "invalid_name")


async def test_faß_and_fass_are_two_domains(client, admin, hosted):
    server, account_id, _customer = hosted
    await create_domain(client, admin, "faß.test", server["id"], account_id)
    await create_domain(client, admin, "fass.test", server["id"], account_id)
    names = [d["name"] for d in (await client.get("/v1/domains", headers=admin)).json()["items"]]
    assert names == ["fass.test", "xn--fa-hia.test"]


async def test_server_hostname_and_self_signed_names_use_the_validator(client, admin):
    r = await client.post("/v1/servers", json={"name": "mx", "hostname": "xn--zz.test", "software": "postfix-dovecot"},
                          headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "invalid_name"
    r = await client.post("/v1/certificates/self-signed", json={"names": ["faß.test"]}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["sans"] == ["xn--fa-hia.test"]


# --- control characters in bodies, forms, paths and queries ---------------------------------

CONTROL = ["\x00", "\n", "\r", "\t", "\x1b[31m", "\x7f", "\x85", "\ud800"]


def _raw_json(body: dict) -> bytes:
    """JSON as a client may send it: a lone surrogate escaped (json.dumps does that)."""
    return json.dumps(body).encode()


@pytest.mark.parametrize("bad", CONTROL)
async def test_control_characters_refused_in_every_body_string(client, admin, hosted, test_ca, bad):
    server, account_id, _customer = hosted
    headers = {**admin, "content-type": "application/json"}
    cases = [
        ("POST", "/v1/accounts", {"name": f"acme{bad}corp"}),
        ("POST", "/v1/tokens", {"role": "admin", "description": f"ci{bad}"}),
        ("POST", "/v1/servers", {"name": f"mx{bad}", "hostname": "mx9.hosting.test", "software": "postfix-dovecot"}),
        ("PATCH", f"/v1/servers/{server['id']}", {"name": f"mx{bad}"}),
        ("PATCH", f"/v1/servers/{server['id']}", {"agent_url": f"https://mx1.hosting.test:8443/{bad}"}),
        ("POST", "/v1/domains", {"name": "ok.test", "server_id": f"{server['id']}{bad}", "account_id": account_id}),
        ("POST", "/v1/certificates/self-signed", {"names": ["ok.test"], "name": f"n{bad}"}),
        ("POST", "/v1/certificates/self-signed", {"names": [f"ok.test{bad}"]}),
        ("POST", "/v1/certificates", upload_body(test_ca.issue(["a.test"]), name=f"n{bad}")),
        ("POST", "/v1/certificates", upload_body(test_ca.issue(["a.test"]), key_passphrase=f"p{bad}")),
        ("POST", "/v1/dns-providers", {"name": "p", "kind": "rfc2136", "settings": {
            "server": "127.0.0.1", "key_name": f"k{bad}", "key_secret": "c2VjcmV0"}}),
        ("POST", "/v1/dns-providers", {"name": "p", "kind": "rfc2136", "settings": {
            "server": "127.0.0.1", "key_name": "k", "key_secret": "c2VjcmV0",
            "propagation_nameservers": [f"127.0.0.1{bad}"]}}),
        ("POST", "/v1/certificate-orders", {"names": [f"a.test{bad}"]}),
    ]
    for method, path, body in cases:
        r = await client.request(method, path, content=_raw_json(body), headers=headers)
        problem = assert_problem(r, 422, "validation_error")
        # a lone surrogate is already refused by the JSON parser, as not a valid string
        assert "control characters" in problem["detail"] or bad == "\ud800", (path, problem)
    assert not [a for a in (await client.get("/v1/accounts", headers=admin)).json()["items"] if "corp" in a["name"]]


async def test_pem_may_hold_line_breaks_but_no_other_control_character(client, admin, test_ca):
    issued = test_ca.issue(["a.test"])
    crlf = upload_body(issued)
    crlf["certificate_pem"] = crlf["certificate_pem"].replace("\n", "\r\n")
    assert (await client.post("/v1/certificates", json=crlf, headers=admin)).status_code == 201
    nul = upload_body(test_ca.issue(["b.test"]))
    nul["private_key_pem"] = nul["private_key_pem"] + "\x00"
    r = await client.post("/v1/certificates", json=nul, headers=admin)
    body = assert_problem(r, 422, "validation_error")
    assert "PRIVATE KEY" not in r.text and body["errors"][0]["loc"] == ["body", "private_key_pem"]


@pytest.mark.parametrize("field", ["password", "key_passphrase", "name", "account_id"])
async def test_control_characters_refused_in_form_fields(client, admin, test_ca, field):
    issued = test_ca.issue(["a.test"])
    files = {"certificate": ("c.pem", issued.cert_pem), "private_key": ("k.pem", issued.key_pem)}
    r = await client.post("/v1/certificates/import", files=files, data={field: "x\x00y"}, headers=admin)
    assert_problem(r, 422, "validation_error")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/certificates/%00",
        "/v1/certificates/a%0Ab",
        "/v1/domains/%00.test",
        "/v1/domains/evil.test%0A",
        "/v1/domains/a.test/bindings",
        "/v1/servers/%1B",
        "/v1/certificate-orders/%00",
        "/v1/dns-providers/%00",
        "/v1/certificates?covers=a%00.test",
        "/v1/certificates?account_id=%00",
        "/v1/domains?cursor=%00",
        "/v1/domains?server_id=%00",
        "/v1/tokens?account_id=%00",
        "/v1/certificates?unknown%00=1",
        "/healthz?x=%0A",
    ],
)
async def test_control_characters_refused_in_paths_and_queries(client, admin, path):
    if path == "/v1/domains/a.test/bindings":
        path = "/v1/domains/a.test%00/bindings"
    r = await client.get(path, headers=admin)
    assert_problem(r, 422, "validation_error")


async def test_delete_with_nul_is_refused(client, admin):
    for path in ("/v1/certificates/%00", "/v1/domains/%00.test", "/v1/tokens/%00", "/v1/servers/%00"):
        assert_problem(await client.delete(path, headers=admin), 422, "validation_error")


# --- dates, cursors, offsets ----------------------------------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_expires_before_out_of_range(client, admin, when):
    r = await client.get("/v1/certificates", params={"expires_before": when}, headers=admin)
    assert_problem(r, 422, "validation_error")


async def test_expires_before_extremes_in_range(client, admin):
    for when in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2030-01-01T00:00:00"):
        r = await client.get("/v1/certificates", params={"expires_before": when}, headers=admin)
        assert r.status_code == 200, r.text


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("0001-01-01T00:00:00+14:00|x"),
        _cursor("9999-12-31T23:59:59-14:00|00000000-0000-0000-0000-000000000000"),
        _cursor("2026-01-01T00:00:00+00:00|\x00"),
        _cursor("2026-01-01T00:00:00+00:00|" + "a" * 5000),
        _cursor("2026-01-01T00:00:00+00:00"),
        "%%%",
        "garbage",
    ],
)
async def test_crafted_cursors_are_refused(client, admin, cursor):
    for path in ("/v1/certificates", "/v1/certificate-orders"):
        r = await client.get(path, params={"cursor": cursor}, headers=admin)
        assert_problem(r, 422, "invalid_cursor")


@pytest.mark.parametrize("path", ["/v1/servers", "/v1/accounts", "/v1/tokens"])
@pytest.mark.parametrize("limit", ["99999999999999999999", "-1", "0", "1001"])
async def test_limits_are_bounded(client, admin, path, limit):
    assert_problem(await client.get(path, params={"limit": limit}, headers=admin), 422, "validation_error")
    assert (await client.get(path, params={"limit": "1000"}, headers=admin)).status_code == 200


async def test_generation_cursor_is_bounded(client, admin, hosted):
    """The cursor of deployments carries an INTEGER generation: one past 32 bits never reaches
    PostgreSQL (which would fail the query), on either backend."""
    server, _account, _customer = hosted
    path = f"/v1/servers/{server['id']}/deployments"
    for generation in (2**31, -(2**31) - 1, "1", 1.5, True):
        r = await client.get(path, params={"cursor": _json_cursor("deployments", generation)}, headers=admin)
        assert_problem(r, 422, "invalid_cursor")
    r = await client.get(path, params={"cursor": _json_cursor("deployments", 2**31 - 1)}, headers=admin)
    assert r.status_code == 200, r.text
    # The paging of before issue 9 (offsets, before_generation) is gone, and refused by name.
    for old in ({"before_generation": 2}, {"offset": 0}):
        problem = assert_problem(await client.get(path, params=old, headers=admin), 422, "unknown_parameter")
        assert problem["parameter"] == next(iter(old))


def _json_cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


async def test_unbound_binding_cannot_be_half_written(client, admin, hosted, test_ca):
    """A refused bind leaves no row and no generation change."""
    server, account_id, customer = hosted
    await create_domain(client, admin, "a.test", server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue(["*.a.test"]))
    before = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]
    r = await client.put("/v1/domains/a.test/bindings/mail", json={"certificate_id": cert["id"] + "\x00"},
                         headers=customer)
    assert_problem(r, 422, "validation_error")
    after = (await client.get(f"/v1/servers/{server['id']}", headers=admin)).json()["desired_generation"]
    assert after == before


async def test_unparsable_bodies_are_400_or_422_problems(client, admin):
    nested = b"[" * 100_000 + b"]" * 100_000  # within 1 MiB, deeper than any parser recurses
    r = await client.post("/v1/accounts", content=nested, headers={**admin, "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/v1/certificates/import", content=b"--zz\r\nbroken",
                          headers={**admin, "content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/v1/domains", params={"cursor": "x" * 5000}, headers=admin)
    assert_problem(r, 422, "invalid_cursor")
    r = await client.get("/v1/certificates/" + "a" * 5000, headers=admin)
    assert_problem(r, 404, "not_found")


@pytest.mark.parametrize("path", ["/v1/accounts", "/v1/servers"])
async def test_display_names_are_trimmed_and_never_blank(client, admin, path):
    """A name of spaces alone lists as nothing a person can pick; `Race ` and `Race` look alike."""
    extra = {"hostname": "mx-trim.example.net", "software": "postfix-dovecot"} if path == "/v1/servers" else {}
    r = await client.post(path, json={"name": "   ", **extra}, headers=admin)
    assert_problem(r, 422, "validation_error")
    r = await client.post(path, json={"name": "  Trimmed name  ", **extra}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Trimmed name"
