"""A private Postfix + Dovecot + nginx + agent for the benchmarks, from tests/support/daemons.py.

Like ``running_stack`` but with two knobs the benchmarks need: a long ``verify_timeout`` (so a
slow reload shows up as a long apply rather than a failed one) and Dovecot optionally left out of
the agent's configuration (so 10,000 per-domain mail certificates do not become 10,000 Dovecot
``local_name`` blocks, which Dovecot 2.3 cannot start or reload with; see real-servers.md).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.kit.signing import public_key_to_text, sign_request
from tests.support import daemons
from tests.support.pki import CA, Issued

BASE_DOMAIN = "bench.test"


def domain(i: int) -> str:
    return f"d{i:05d}.{BASE_DOMAIN}"


class Material:
    """One throwaway CA (root + intermediate, EC P-256) and the certificates issued from it."""

    def __init__(self) -> None:
        self.root = CA.create("certpost bench root")
        self.issuing = self.root.intermediate("certpost bench intermediate")
        self.certs: dict[str, Issued] = {}

    def issue(self, names: list[str]) -> Issued:
        issued = self.issuing.issue(names)
        self.certs[issued.fingerprint] = issued
        return issued

    def bundle(self, fp: str) -> dict:
        c = self.certs[fp]
        return {"key_pem": c.key_pem, "certificate_pem": c.cert_pem, "chain_pem": c.chain_pem}


class Agent:
    """Signed HTTPS client for the stack's agent; keeps the bytes and times of every push."""

    def __init__(self, stack: daemons.Stack, key: Ed25519PrivateKey, timeout: float = 1800) -> None:
        self.stack, self.key = stack, key
        import ssl

        context = ssl.create_default_context(cafile=str(stack.state_dir / "tls" / "agent.crt"))
        self.http = httpx.Client(base_url=stack.agent_url, verify=context, timeout=timeout)

    def request(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body else {}
        headers.update(sign_request(self.key, method, path, body))
        return self.http.request(method, path, content=body, headers=headers)

    def state(self) -> dict:
        r = self.request("GET", "/v1/state")
        r.raise_for_status()
        return r.json()

    def push(self, desired: dict, material: Material) -> dict:
        """What the controller does: send only the bundles the agent lacks. Returns a record
        with wall time of the PUT (signing and JSON encoding excluded), bytes, status, body."""
        held = set(self.state()["fingerprints"])
        referenced = {desired["server_certificate"], desired["webmail_default"],
                      *desired["mail"].values(), *desired["webmail"].values()}
        send = sorted(referenced - held)
        bundles = {fp: material.bundle(fp) for fp in send}
        return self._put({**desired, "bundles": bundles}, send, bundles)

    def _put(self, document: dict, send: list[str], bundles: dict, sending=None) -> dict:
        """``sending``, when given, is called just before the request goes out (after the body
        is encoded and signed): where a benchmark starts its clock."""
        body = json.dumps(document).encode()
        bundle_bytes = len(json.dumps(bundles).encode())
        headers = {"Content-Type": "application/json"}
        headers.update(sign_request(self.key, "PUT", "/v1/config", body))
        if sending is not None:
            sending()
        started = time.perf_counter()
        r = self.http.request("PUT", "/v1/config", content=body, headers=headers)
        wall = time.perf_counter() - started
        try:
            answer = r.json()
        except ValueError:
            answer = {"raw": r.text[:500]}
        return {"wall_s": round(wall, 3), "bytes_sent": len(body), "bundles_sent": len(send),
                "bundle_bytes": bundle_bytes,
                "status": r.status_code, "answer": answer}

    def push_delta(self, applied: dict, desired: dict, material: Material, sending=None) -> dict:
        """The same as a controller sending a delta document (docs/agent.md): the changed names
        against ``applied`` (what the agent applied), with both digests, and the missing bundles.

        Preparing it here costs what the controller does not pay: this client diffs two whole
        documents, digests both and asks the agent for every fingerprint it holds, where the
        controller keeps the applied digest and names, and sends the bundles of the fingerprints
        the applied document did not hold without asking (app/deployments/delivery.py; its own
        part is measured by bench/e2e.py). ``sending`` (see ``_put``) is
        called once that is done, just before the PUT goes out."""
        from app.kit.digest import config_digest

        def changes(old: dict, new: dict) -> dict:
            out = {name: None for name in old.keys() - new.keys()}
            out.update({name: fp for name, fp in new.items() if old.get(name) != fp})
            return out

        delta = {"generation": desired["generation"],
                 "base_digest": config_digest(applied), "digest": config_digest(desired),
                 **{k: desired[k] for k in ("server_hostname", "server_certificate",
                                            "webmail_default")},
                 "mail_changes": changes(applied["mail"], desired["mail"]),
                 "webmail_changes": changes(applied["webmail"], desired["webmail"])}
        held = set(self.state()["fingerprints"])
        referenced = {desired["server_certificate"], desired["webmail_default"],
                      *delta["mail_changes"].values(), *delta["webmail_changes"].values()} - {None}
        send = sorted(referenced - held)
        bundles = {fp: material.bundle(fp) for fp in send}
        return self._put({**delta, "bundles": bundles}, send, bundles, sending)

    def close(self) -> None:
        self.http.close()


def _disable(agent_toml: Path, section: str) -> None:
    text = agent_toml.read_text().replace(f"[{section}]\n", f"[{section}]\nenabled = false\n", 1)
    agent_toml.write_text(text)


@contextlib.contextmanager
def bench_stack(*, dovecot: bool = True, verify_timeout: float = 120, keep: bool = False,
                controller_public_key: str | None = None):
    """Daemons and agent up; yields (stack, Agent client, AgentProcess).

    With ``controller_public_key`` (a real controller's, bench/e2e.py) the agent trusts that key
    and the yielded client is None: only that controller can sign for it."""
    key = Ed25519PrivateKey.generate()
    public = controller_public_key or public_key_to_text(key.public_key())
    root = daemons.make_root("certpost-bench-")
    stack = daemons.write_stack(root, controller_public_key=public)
    daemons.write_agent_config(stack, verify_timeout=verify_timeout)
    if not dovecot:
        _disable(stack.agent_config, "dovecot")
    process = daemons.AgentProcess(stack)
    client = None
    try:
        daemons.bootstrap_agent(stack)
        daemons.start_postfix(stack)
        if dovecot:  # left out: it would !include a file the agent never writes
            daemons.start_dovecot(stack)
        daemons.start_nginx(stack)
        process.start()
        client = None if controller_public_key else Agent(stack, key)
        yield stack, client, process
    finally:
        if client is not None:
            client.close()
        process.stop()
        daemons.stop_daemons(stack)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def nginx_argv(stack: daemons.Stack, *extra: str) -> list[str]:
    d = stack.nginx_dir
    return ["nginx", "-e", str(d / "error.log"), "-p", f"{d}/", "-c", str(d / "nginx.conf"), *extra]


def postfix_map_type(stack: daemons.Stack) -> str:
    for line in (stack.postfix_dir / "etc" / "main.cf").read_text().splitlines():
        if line.startswith("tls_server_sni_maps"):
            return line.split("=", 1)[1].strip().split(":", 1)[0]
    return "hash"
