"""GET /v1/dns-providers with a customer token: its own providers in full, the platform's only as
much as ordering with them takes (id, name, kind, usable), never the operator's addresses."""

from __future__ import annotations

from tests.support.api import assert_problem, list_all

PLATFORM = {"server": "10.20.30.40", "port": 5353, "key_name": "platform-tsig.", "key_secret": "c2VjcmV0",
            "zones": ["acme.platform.test"]}
OWN = {"server": "9.9.9.9", "key_name": "shop-tsig.", "key_secret": "c2VjcmV0"}


async def test_a_customer_sees_the_platform_providers_name_and_kind_only(client, admin, customer_headers):
    r = await client.post("/v1/dns-providers", json={"name": "platform", "kind": "rfc2136", "settings": PLATFORM},
                          headers=admin)
    assert r.status_code == 201, r.text
    platform = r.json()
    account_id, customer = await customer_headers()
    r = await client.post("/v1/dns-providers", json={"name": "shop", "kind": "rfc2136", "settings": OWN},
                          headers=customer)
    assert r.status_code == 201, r.text
    own = r.json()

    listed = {p["id"]: p for p in await list_all(client, "/v1/dns-providers", customer)}
    assert listed[platform["id"]] == {"id": platform["id"], "name": "platform", "kind": "rfc2136", "account_id": None,
                                     "settings": None, "secrets_set": [], "usable": True,
                                     "created_at": platform["created_at"]}
    assert listed[own["id"]]["settings"]["server"] == "9.9.9.9" and listed[own["id"]]["secrets_set"] == ["key_secret"]
    assert listed[own["id"]]["usable"] and listed[own["id"]]["account_id"] == account_id
    one = (await client.get(f"/v1/dns-providers/{platform['id']}", headers=customer)).json()
    assert one == listed[platform["id"]]
    blob = (await client.get("/v1/dns-providers", headers=customer)).text
    assert "10.20.30.40" not in blob and "platform-tsig" not in blob and "acme.platform.test" not in blob
    # An admin still reads everything; the customer still cannot delete the platform's.
    full = {p["id"]: p for p in await list_all(client, "/v1/dns-providers", admin)}
    assert full[platform["id"]]["settings"]["server"] == "10.20.30.40"
    assert full[platform["id"]]["settings"]["zones"] == ["acme.platform.test"]
    assert_problem(await client.delete(f"/v1/dns-providers/{platform['id']}", headers=customer), 404, "not_found")
