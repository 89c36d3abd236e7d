"""Mail client autoconfiguration end to end: bound through the API, delivered by the worker,
served by the agent's real nginx (workers as www-data), fetched over HTTPS with the client's
SNI by curl, which checks the certificate against the test CA as a mail client would.

Two tenants on one server whose server-wide mail certificate is trusted: one with a trusted
mail binding (clients are told ``mail.<d>``), one without (told the server's host name); a
mail binding for the second, delivered as a delta, flips what it is told. Each document is
read the way its client reads it: Thunderbird's config-v1.1 (wiki.mozilla.org,
Thunderbird:Autoconfiguration:ConfigFileFormat), Outlook's POX Autodiscover ([MS-OXDSCLI]
2.2.4, the "outlook" response schema 2006a), and an Apple profile through plistlib.
"""

from __future__ import annotations

import asyncio
import plistlib
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest

from tests.support.api import create_domain, create_server, upload
from tests.support.worker import server_applied, work_until

pytestmark = pytest.mark.daemons

ONE, TWO, THREE = "tenant-one.test", "tenant-two.test", "tenant-three.test"
AD_NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
OL_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    "<Request><EMailAddress>{email}</EMailAddress><AcceptableResponseSchema>"
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)


def curl(stack, host: str, path: str, *, ca_file: str | None, data: str | None = None) -> tuple[int, bytes, int]:
    """(curl's exit status, body, HTTP status) for https://<host><path>, SNI and Host ``host``."""
    port = stack.ports["https"]
    argv = ["curl", "-sS", "--max-time", "20", "--resolve", f"{host}:{port}:127.0.0.1",
            "-w", "\n%{http_code}", f"https://{host}:{port}{path}"]
    argv += ["--cacert", ca_file] if ca_file else ["-k"]
    if data is not None:
        argv += ["-H", "Content-Type: text/xml", "--data-binary", data]
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    body, _, code = done.stdout.rpartition(b"\n")
    return done.returncode, body, int(code or 0)


async def fetch(stack, host, path, ca_file, data=None) -> bytes:
    rc, body, status = await asyncio.to_thread(curl, stack, host, path, ca_file=ca_file, data=data)
    assert rc == 0 and status == 200, (host, path, rc, status, body[:300])
    return body


def text(element, tag: str) -> str:
    found = element.find(tag)
    assert found is not None and found.text, (tag, ET.tostring(element))
    return found.text.strip()


def thunderbird_servers(body: bytes, domain: str) -> list[tuple[str, str, str, int, str]]:
    """(element, type, hostname, port, socketType) of every server, checking what Thunderbird reads."""
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    providers = root.findall("emailProvider")
    assert len(providers) == 1 and providers[0].get("id") == domain
    provider = providers[0]
    assert [d.text for d in provider.findall("domain")] == [domain]
    text(provider, "displayName")
    servers = []
    for element in provider:
        if element.tag not in ("incomingServer", "outgoingServer"):
            continue
        kind = element.get("type")
        assert kind in (("imap", "pop3") if element.tag == "incomingServer" else ("smtp",))
        socket_type = text(element, "socketType")
        assert socket_type in ("SSL", "STARTTLS")  # never "plain"
        assert text(element, "authentication") == "password-cleartext"
        assert text(element, "username") == "%EMAILADDRESS%"
        servers.append((element.tag, kind, text(element, "hostname"), int(text(element, "port")), socket_type))
    return servers


def assert_thunderbird(body: bytes, domain: str, host: str) -> None:
    servers = thunderbird_servers(body, domain)
    assert {s[2] for s in servers} == {host}
    # RFC 8314: implicit TLS first for each protocol (Thunderbird takes the first it can reach).
    firsts = {}
    for _, kind, _, port, socket_type in servers:
        firsts.setdefault(kind, (port, socket_type))
    assert firsts == {"imap": (993, "SSL"), "pop3": (995, "SSL"), "smtp": (465, "SSL")}
    assert {(k, p, s) for _, k, _, p, s in servers} >= {("imap", 143, "STARTTLS"), ("smtp", 587, "STARTTLS")}


def outlook_protocols(body: bytes, email: str) -> list[dict]:
    root = ET.fromstring(body)
    assert root.tag == f"{AD_NS}Autodiscover"
    response = root.find(f"{OL_NS}Response")
    assert response is not None, body
    user = response.find(f"{OL_NS}User")
    assert text(user, f"{OL_NS}AutoDiscoverSMTPAddress") == email
    account = response.find(f"{OL_NS}Account")
    assert text(account, f"{OL_NS}AccountType") == "email"
    assert text(account, f"{OL_NS}Action") == "settings"
    protocols = []
    for protocol in account.findall(f"{OL_NS}Protocol"):
        entry = {tag: text(protocol, f"{OL_NS}{tag}") for tag in
                 ("Type", "Server", "Port", "LoginName", "SSL", "Encryption", "SPA", "AuthRequired", "DomainRequired")}
        assert entry["LoginName"] == email and entry["SSL"] == "on" and entry["SPA"] == "off"
        assert entry["AuthRequired"] == "on" and entry["Encryption"] in ("SSL", "TLS")
        protocols.append(entry)
    return protocols


def assert_outlook(body: bytes, email: str, host: str) -> None:
    protocols = outlook_protocols(body, email)
    assert {p["Server"] for p in protocols} == {host}
    firsts = {}
    for p in protocols:  # Outlook uses the first Protocol of each Type
        firsts.setdefault(p["Type"], (int(p["Port"]), p["Encryption"]))
    assert firsts == {"IMAP": (993, "SSL"), "POP3": (995, "SSL"), "SMTP": (465, "SSL")}
    assert ("IMAP", "143", "TLS") in {(p["Type"], p["Port"], p["Encryption"]) for p in protocols}


def assert_profile(body: bytes, domain: str, host: str, email: str | None) -> None:
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    uuid.UUID(profile["PayloadUUID"])
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert uuid.UUID(mail["PayloadUUID"]) != uuid.UUID(profile["PayloadUUID"])
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["IncomingMailServerHostName"] == mail["OutgoingMailServerHostName"] == host
    assert (mail["IncomingMailServerPortNumber"], mail["IncomingMailServerUseSSL"]) == (993, True)
    assert (mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (465, True)
    assert mail["IncomingMailServerAuthentication"] == mail["OutgoingMailServerAuthentication"] == "EmailAuthPassword"
    assert mail.get("EmailAddress") == email and mail.get("IncomingMailServerUsername") == email
    assert mail["EmailAccountDescription"] == domain


async def assert_advertised(stack, ca_file, domain: str, host: str) -> None:
    """All three formats, on each name a client asks, tell ``host``."""
    email = f"joe.user+tag@{domain}"
    for name, path in ((f"autoconfig.{domain}", f"/mail/config-v1.1.xml?emailaddress={email}"),
                       (f"autoconfig.{domain}", "/.well-known/autoconfig/mail/config-v1.1.xml")):
        assert_thunderbird(await fetch(stack, name, path, ca_file), domain, host)
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        body = await fetch(stack, f"autodiscover.{domain}", path, ca_file, data=REQUEST.format(email=email))
        assert_outlook(body, email, host)
    body = await fetch(stack, f"autoconfig.{domain}", f"/mail/{domain}.mobileconfig?email=joe%40{domain}", ca_file)
    assert_profile(body, domain, host, f"joe@{domain}")
    body = await fetch(stack, f"autoconfig.{domain}", f"/mail/{domain}.mobileconfig", ca_file)
    assert_profile(body, domain, host, None)



async def test_autoconfig_follows_bindings(client, admin, controller, stack, test_ca, settings, customer_headers,
                                           sent_documents):
    stack, agent = stack
    ca_file = str(settings.trust_bundle)
    server = await create_server(client, admin, name="autoconfig-e2e", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    sid = server["id"]
    wide = await upload(client, admin, test_ca.issue([stack.hostname]))
    r = await client.put(f"/v1/servers/{sid}/mail-certificate", json={"certificate_id": wide["id"]}, headers=admin)
    assert r.status_code == 200, r.text

    tenants = {}
    for domain in (ONE, TWO, THREE):
        account_id, customer = await customer_headers()
        await create_domain(client, admin, domain, sid, account_id)
        tenants[domain] = customer
    # ONE: one wildcard for everything, bound to webmail and mail.
    wildcard = await upload(client, tenants[ONE], test_ca.issue([ONE, f"*.{ONE}"]))
    for service in ("webmail", "mail"):
        r = await client.put(f"/v1/domains/{ONE}/bindings/{service}", json={"certificate_id": wildcard["id"]},
                             headers=tenants[ONE])
        assert r.status_code == 201, r.text
    # TWO: a SAN certificate for webmail and the autoconfiguration names; no mail binding.
    san = await upload(client, tenants[TWO], test_ca.issue([f"webmail.{TWO}", f"autoconfig.{TWO}",
                                                           f"autodiscover.{TWO}"]))
    r = await client.put(f"/v1/domains/{TWO}/bindings/webmail", json={"certificate_id": san["id"]},
                         headers=tenants[TWO])
    assert r.status_code == 201, r.text
    # THREE: nothing bound at all.

    await work_until(controller, server_applied(client, admin, sid))
    assert sent_documents[-1]["autoconfig"] == {ONE: f"mail.{ONE}", TWO: stack.hostname, THREE: stack.hostname}
    await assert_advertised(stack, ca_file, ONE, f"mail.{ONE}")
    await assert_advertised(stack, ca_file, TWO, stack.hostname)

    # What the TLS status says is what was served; THREE's names get the server's default
    # certificate, which does not cover them: a warning, and a real client refuses them.
    status = (await client.get(f"/v1/domains/{ONE}/tls", headers=tenants[ONE])).json()
    assert status["autoconfig"]["hostname"] == status["mail"]["recommended_client_hostname"] == f"mail.{ONE}"
    assert [(e["protocol"], e["port"], e["security"]) for e in status["autoconfig"]["endpoints"]][:2] == [
        ("imap", 993, "tls"), ("imap", 143, "starttls")]
    assert status["autoconfig"]["uncovered_names"] == [] and status["autoconfig"]["deployed"] is True
    assert "autoconfig_names_not_covered" not in {w["code"] for w in status["warnings"]}
    status = (await client.get(f"/v1/domains/{TWO}/tls", headers=tenants[TWO])).json()
    assert status["autoconfig"]["hostname"] == stack.hostname
    assert status["mail"]["recommendation_reason"] == "mail_hostname_warns"
    status = (await client.get(f"/v1/domains/{THREE}/tls", headers=tenants[THREE])).json()
    assert status["autoconfig"]["hostname"] == stack.hostname
    assert status["autoconfig"]["uncovered_names"] == [f"autoconfig.{THREE}", f"autodiscover.{THREE}"]
    assert "autoconfig_names_not_covered" in {w["code"] for w in status["warnings"]}
    rc, _, _ = await asyncio.to_thread(curl, stack, f"autoconfig.{THREE}", "/mail/config-v1.1.xml", ca_file=ca_file)
    assert rc == 60  # curl: the peer's certificate cannot be authenticated for that name
    rc, body, code = await asyncio.to_thread(curl, stack, f"autoconfig.{THREE}", "/mail/config-v1.1.xml",
                                             ca_file=None)
    assert (rc, code) == (0, 200)
    assert_thunderbird(body, THREE, stack.hostname)  # served for every domain, warning or not

    # A trusted mail binding for TWO flips what its clients are told, at the next deploy.
    mail_two = await upload(client, tenants[TWO], test_ca.issue([f"mail.{TWO}"]))
    r = await client.put(f"/v1/domains/{TWO}/bindings/mail", json={"certificate_id": mail_two["id"]},
                         headers=tenants[TWO])
    assert r.status_code == 201, r.text
    pending = (await client.get(f"/v1/domains/{TWO}/tls", headers=tenants[TWO])).json()["autoconfig"]
    assert pending["hostname"] == f"mail.{TWO}" and pending["deployed"] is False
    await work_until(controller, server_applied(client, admin, sid))
    # One delta with that domain's entry, not the whole document.
    assert "base_digest" in sent_documents[-1], sent_documents[-1].keys()
    assert sent_documents[-1]["autoconfig_changes"] == {TWO: f"mail.{TWO}"}
    await assert_advertised(stack, ca_file, TWO, f"mail.{TWO}")
    await assert_advertised(stack, ca_file, ONE, f"mail.{ONE}")  # the other tenant is untouched


async def test_autodiscover_refuses_hostile_input(client, admin, controller, stack, test_ca, settings,
                                                  customer_headers):
    """EMailAddress and ?email= are attacker input: anything but a plain address is refused,
    nothing of it reaches the document, and a foreign path or host gets nothing."""
    stack, agent = stack
    ca_file = str(settings.trust_bundle)
    domain = "hostile.test"
    server = await create_server(client, admin, name="autoconfig-hostile", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, domain, server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue([f"*.{domain}"]))
    r = await client.put(f"/v1/domains/{domain}/bindings/webmail", json={"certificate_id": cert["id"]},
                         headers=customer)
    assert r.status_code == 201, r.text
    await work_until(controller, server_applied(client, admin, server["id"]))
    name = f"autodiscover.{domain}"
    for hostile in ('x"/><Server>evil.test</Server>@a.test', "a&amp;b@a.test", "<![CDATA[x]]>@a.test",
                    "joe@a.test</EMailAddress><Injected/><EMailAddress>", "", "no-at-sign"):
        body = await fetch(stack, name, "/autodiscover/autodiscover.xml", ca_file,
                           data=REQUEST.format(email=hostile))
        root = ET.fromstring(body)
        error = root.find(f"{AD_NS}Response/{AD_NS}Error")
        if "joe@a.test</EMailAddress>" in hostile:  # the first address is plain: it alone is used
            assert error is None and b"Injected" not in body
            assert_outlook(body, "joe@a.test", stack.hostname)
            continue
        assert error is not None, body
        assert text(error, f"{AD_NS}ErrorCode") == "600"
        assert b"evil" not in body and b"CDATA" not in body
    _, _, code = await asyncio.to_thread(curl, stack, name, "/autodiscover/autodiscover.xml", ca_file=ca_file,
                                          data="<EMailAddress>" + "a" * 20000 + "@a.test</EMailAddress>")
    assert code == 413
    _, _, code = await asyncio.to_thread(curl, stack, name, "/autodiscover/autodiscover.xml", ca_file=ca_file)
    assert code == 405  # the POX protocol is a POST
    for query, expected in (("?email=a%22%3E%3Cx%3E%40b.test", 400), ("?email=joe%40b.test%0A", 400),
                            ("?email=%3Cscript%3E", 400)):
        _, body, code = await asyncio.to_thread(curl, stack, f"autoconfig.{domain}",
                                                 f"/mail/{domain}.mobileconfig{query}", ca_file=ca_file)
        assert code == expected, (query, body)
    _, _, code = await asyncio.to_thread(curl, stack, f"autoconfig.{domain}", "/mail/other.test.mobileconfig",
                                          ca_file=ca_file)
    assert code == 404  # only the domain the host belongs to
    _, _, code = await asyncio.to_thread(curl, stack, "autoconfig.unknown.test", "/mail/config-v1.1.xml",
                                          ca_file=None)
    assert code == 404  # a host that is no domain of this server
    _, _, code = await asyncio.to_thread(curl, stack, "autodiscover.unknown.test", "/autodiscover/autodiscover.xml",
                                         ca_file=None, data=REQUEST.format(email="joe@unknown.test"))
    assert code == 404
