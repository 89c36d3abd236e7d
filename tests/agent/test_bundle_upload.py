"""``PUT /v1/bundles``: bundles ahead of the document, checked and stored, never applied, and not
pruned before the generation they were sent for is applied.

Against the real ``certpost agent`` subprocess without daemons (an agent with no backend applies
documents too), with a small ``max_body_bytes`` so the gate's limit is cheap to cross.
"""

from __future__ import annotations

import json
import ssl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import public_key_to_text, sign_request
from tests.support.daemons import AgentProcess, bare_stack
from tests.support.pki import CA

LIMIT = 256 * 1024
KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("upload root").intermediate("upload intermediate")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    stack = bare_stack(tmp_path_factory.mktemp("upload"), public_key_to_text(KEY.public_key()),
                       max_body_bytes=LIMIT)
    process = AgentProcess(stack)
    process.start()
    context = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
    http = httpx.Client(base_url=stack.agent_url, verify=context, timeout=30)

    def call(method: str, path: str, document=None, *, raw: bytes | None = None) -> httpx.Response:
        body = raw if raw is not None else (json.dumps(document).encode() if document is not None else b"")
        headers = {"Content-Type": "application/json"} if body else {}
        headers.update(sign_request(KEY, method, path, body))
        return http.request(method, path, content=body, headers=headers)

    yield call, stack, process
    http.close()
    process.stop()


def bundle(issued, key_pem: str | None = None) -> dict:
    return {"key_pem": key_pem or issued.key_pem, "certificate_pem": issued.cert_pem, "chain_pem": issued.chain_pem}


def state(call) -> dict:
    r = call("GET", "/v1/state")
    assert r.status_code == 200, r.text
    return r.json()


def document(generation: int, server_fp: str, mail: dict[str, str]) -> dict:
    return {"generation": generation, "server_hostname": "mx1.host.test", "server_certificate": server_fp,
            "webmail_default": server_fp, "mail": mail, "webmail": {}}


def test_state_announces_the_feature_and_the_limit(agent):
    call, _, _ = agent
    st = state(call)
    assert "bundle-upload" in st["features"] and st["max_body_bytes"] == LIMIT


def test_uploaded_bundles_are_held_until_their_generation_and_then_served(agent, ca):
    call, _, _ = agent
    st = state(call)
    g = st["applied_generation"] + 1
    server_fp = st["fingerprints"][0]  # the bootstrap bundle
    a, b = ca.issue(["mail.a.test"]), ca.issue(["mail.b.test"])
    r = call("PUT", "/v1/bundles", {"generation": g + 1, "bundles": {a.fingerprint: bundle(a), b.fingerprint: bundle(b)}})
    assert r.status_code == 200, r.text
    assert r.json() == {"generation": g + 1, "stored": 2, "refused": []}
    assert {a.fingerprint, b.fingerprint} <= set(state(call)["fingerprints"])

    # An apply of an earlier generation that references neither does not prune them ...
    r = call("PUT", "/v1/config", document(g, server_fp, {}))
    assert r.status_code == 200, r.text
    assert {a.fingerprint, b.fingerprint} <= set(state(call)["fingerprints"])
    # ... and the document they were sent for needs no bundles.
    r = call("PUT", "/v1/config", document(g + 1, server_fp, {"mail.a.test": a.fingerprint, "mail.b.test": b.fingerprint}))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "applied"
    # Once their generation is applied they are ordinary bundles: pruned when unreferenced.
    r = call("PUT", "/v1/config", document(g + 2, server_fp, {"mail.a.test": a.fingerprint}))
    assert r.status_code == 200, r.text
    held = set(state(call)["fingerprints"])
    assert a.fingerprint in held and b.fingerprint not in held


def test_unsound_bundles_are_refused_one_by_one(agent, ca):
    call, _, _ = agent
    g = state(call)["applied_generation"] + 1
    good, bad_key, mismatched, misnamed = (ca.issue([f"mail.{n}.test"]) for n in "cdef")
    other = ca.issue(["mail.other.test"])
    bundles = {
        good.fingerprint: bundle(good),
        bad_key.fingerprint: bundle(bad_key, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"),
        mismatched.fingerprint: bundle(mismatched, other.key_pem),
        "0" * 64: bundle(misnamed),  # the leaf's fingerprint is not its name
    }
    r = call("PUT", "/v1/bundles", {"generation": g, "bundles": bundles})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["stored"] == 1
    refused = {item["fingerprint"]: item for item in answer["refused"]}
    assert set(refused) == {bad_key.fingerprint, mismatched.fingerprint, "0" * 64}
    assert all(item["code"] == "invalid_bundle" for item in refused.values())
    assert "does not belong" in refused[mismatched.fingerprint]["message"]
    assert "BEGIN" not in r.text and other.key_pem.splitlines()[1] not in r.text  # no key material
    held = set(state(call)["fingerprints"])
    assert good.fingerprint in held and not held & set(refused)


@pytest.mark.parametrize("body, code", [
    ({"generation": 5, "bundles": {}}, "invalid_request"),  # empty
    ({"generation": 5, "bundles": {"../../etc/passwd": {"key_pem": "", "certificate_pem": ""}}}, "invalid_request"),
    ({"generation": 5, "bundles": {"a" * 64: {"key_pem": "", "certificate_pem": "", "extra": 1}}}, "invalid_request"),
    ({"bundles": {"a" * 64: {"key_pem": "", "certificate_pem": ""}}}, "invalid_request"),  # no generation
])
def test_malformed_uploads_are_400(agent, body, code):
    call, _, _ = agent
    r = call("PUT", "/v1/bundles", body)
    assert r.status_code == 400 and r.json()["code"] == code, r.text


def test_too_many_bundles_in_one_chunk_is_400(agent):
    call, _, _ = agent
    tiny = {"key_pem": "", "certificate_pem": ""}
    body = {"generation": 5, "bundles": {f"{i:064x}": tiny for i in range(1001)}}
    r = call("PUT", "/v1/bundles", body)
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text


def test_an_oversized_chunk_is_refused_by_the_gate(agent, ca):
    call, _, _ = agent
    issued = ca.issue(["mail.big.test"])
    padded = bundle(issued)
    padded["chain_pem"] = issued.chain_pem * (LIMIT // len(issued.chain_pem) + 1)
    r = call("PUT", "/v1/bundles", {"generation": 99, "bundles": {issued.fingerprint: padded}})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert issued.fingerprint not in state(call)["fingerprints"]


def test_a_stale_generation_is_409(agent, ca):
    call, _, _ = agent
    applied = state(call)["applied_generation"]
    issued = ca.issue(["mail.stale.test"])
    r = call("PUT", "/v1/bundles", {"generation": max(applied, 1), "bundles": {issued.fingerprint: bundle(issued)}})
    assert r.status_code == 409 and r.json()["code"] == "stale_generation", r.text


def test_unsigned_uploads_are_401(agent, ca):
    _call, stack, _ = agent
    context = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
    r = httpx.put(f"{stack.agent_url}/v1/bundles", json={"generation": 9, "bundles": {}}, verify=context)
    assert r.status_code == 401
