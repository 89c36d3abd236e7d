"""The three documents mail clients read to configure themselves, as text templates.

Each function takes its values as strings and pastes them in unescaped: the nginx backend
passes nginx variable names (``$certpost_ac_host``), whose values are canonical host names or
an e-mail address that a regular expression reduced to ``[A-Za-z0-9._+-]`` and ``@`` (see
``app.agent.backends.nginx_autoconfig``), so no value can carry ``<``, ``&`` or a quote. The
texts contain no ``$`` and no single quote, so they can be an nginx ``return`` string.

Formats:
- Thunderbird: https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat
  (``clientConfig`` 1.1, one ``emailProvider``; the first server of a type is preferred).
- Outlook: [MS-OXDSCLI] section 2.2.4, the POX response in the "outlook" response schema
  (``.../outlook/responseschema/2006a``), one ``Protocol`` per protocol and port; Outlook
  takes the first of each ``Type``, so implicit TLS comes first. ``Encryption`` (SSL or TLS)
  says implicit TLS or STARTTLS; ``SSL`` stays ``on`` for both (secure logon required).
- Apple: a configuration profile (a property list) with one ``com.apple.mail.managed``
  payload; only one incoming and one outgoing server fit, so those are IMAP 993 and 465.
  The profile is not signed (devices show it as "Not Verified" but install it).
"""

from __future__ import annotations

from app.kit.mailclients import ENDPOINTS

_TB_SOCKET = {"tls": "SSL", "starttls": "STARTTLS"}
_OUTLOOK_TYPE = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
_OUTLOOK_ENCRYPTION = {"tls": "SSL", "starttls": "TLS"}

AUTODISCOVER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def thunderbird(domain: str, host: str) -> str:
    """``config-v1.1.xml``; the user name is the address the user typed (``%EMAILADDRESS%``)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{domain}">',
        f"    <domain>{domain}</domain>",
        f"    <displayName>Mail for {domain}</displayName>",
        f"    <displayShortName>{domain}</displayShortName>",
    ]
    for ep in ENDPOINTS:
        element = "outgoingServer" if ep.protocol == "smtp" else "incomingServer"
        lines += [
            f'    <{element} type="{ep.protocol}">',
            f"      <hostname>{host}</hostname>",
            f"      <port>{ep.port}</port>",
            f"      <socketType>{_TB_SOCKET[ep.security]}</socketType>",
            "      <authentication>password-cleartext</authentication>",
            "      <username>%EMAILADDRESS%</username>",
            f"    </{element}>",
        ]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines)


def autodiscover(host: str, email: str) -> str:
    """The POX answer for ``email`` (already validated), one Protocol per endpoint."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{AUTODISCOVER_NS}">',
        f'  <Response xmlns="{OUTLOOK_NS}">',
        "    <User>",
        f"      <DisplayName>{email}</DisplayName>",
        f"      <AutoDiscoverSMTPAddress>{email}</AutoDiscoverSMTPAddress>",
        "    </User>",
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    for ep in ENDPOINTS:
        lines += [
            "      <Protocol>",
            f"        <Type>{_OUTLOOK_TYPE[ep.protocol]}</Type>",
            f"        <Server>{host}</Server>",
            f"        <Port>{ep.port}</Port>",
            "        <DomainRequired>off</DomainRequired>",
            f"        <LoginName>{email}</LoginName>",
            "        <SPA>off</SPA>",
            "        <SSL>on</SSL>",
            f"        <Encryption>{_OUTLOOK_ENCRYPTION[ep.security]}</Encryption>",
            "        <AuthRequired>on</AuthRequired>",
        ]
        if ep.protocol == "smtp":
            lines.append("        <UsePOPAuth>on</UsePOPAuth>")
        lines.append("      </Protocol>")
    lines += ["    </Account>", "  </Response>", "</Autodiscover>", ""]
    return "\n".join(lines)


def autodiscover_error() -> str:
    """[MS-OXDSCLI] 2.2.4.2: error 600 "Invalid Request" (no usable EMailAddress was sent)."""
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{AUTODISCOVER_NS}">',
        "  <Response>",
        '    <Error Id="0" Time="00:00:00">',
        "      <ErrorCode>600</ErrorCode>",
        "      <Message>Invalid Request</Message>",
        "      <DebugData />",
        "    </Error>",
        "  </Response>",
        "</Autodiscover>",
        "",
    ])


def _string(key: str, value: str) -> list[str]:
    return [f"      <key>{key}</key>", f"      <string>{value}</string>"]


def _integer(key: str, value: int) -> list[str]:
    return [f"      <key>{key}</key>", f"      <integer>{value}</integer>"]


def _true(key: str) -> list[str]:
    return [f"      <key>{key}</key>", "      <true/>"]


def mobileconfig(domain: str, host: str, email: str | None, profile_uuid: str, payload_uuid: str) -> str:
    """An Apple profile; without ``email`` the device asks for the address and user name."""
    imap = next(ep for ep in ENDPOINTS if ep.protocol == "imap" and ep.security == "tls")
    smtp = next(ep for ep in ENDPOINTS if ep.protocol == "smtp" and ep.security == "tls")
    payload = [
        *_string("EmailAccountDescription", domain),
        *_string("EmailAccountName", email or domain),
        *_string("EmailAccountType", "EmailTypeIMAP"),
    ]
    if email:
        payload += _string("EmailAddress", email)
    payload += [
        *_string("IncomingMailServerAuthentication", "EmailAuthPassword"),
        *_string("IncomingMailServerHostName", host),
        *_integer("IncomingMailServerPortNumber", imap.port),
        *_true("IncomingMailServerUseSSL"),
    ]
    if email:
        payload += _string("IncomingMailServerUsername", email)
    payload += [
        *_string("OutgoingMailServerAuthentication", "EmailAuthPassword"),
        *_string("OutgoingMailServerHostName", host),
        *_integer("OutgoingMailServerPortNumber", smtp.port),
        *_true("OutgoingMailServerUseSSL"),
    ]
    if email:
        payload += _string("OutgoingMailServerUsername", email)
    payload += [
        *_true("OutgoingPasswordSameAsIncomingPassword"),
        *_string("PayloadDescription", f"Mail settings for {domain}"),
        *_string("PayloadDisplayName", f"Mail ({domain})"),
        *_string("PayloadIdentifier", f"{domain}.certpost.mail.account"),
        *_string("PayloadType", "com.apple.mail.managed"),
        *_string("PayloadUUID", payload_uuid),
        *_integer("PayloadVersion", 1),
    ]
    outer = [line[2:] for line in (
        *_string("PayloadDescription", f"Mail settings for {domain}"),
        *_string("PayloadDisplayName", f"Mail for {domain}"),
        *_string("PayloadIdentifier", f"{domain}.certpost.mail"),
        *_string("PayloadType", "Configuration"),
        *_string("PayloadUUID", profile_uuid),
        *_integer("PayloadVersion", 1),
    )]
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
        '<plist version="1.0">',
        "<dict>",
        "  <key>PayloadContent</key>",
        "  <array>",
        "    <dict>",
        *payload,
        "    </dict>",
        "  </array>",
        *outer,
        "</dict>",
        "</plist>",
        "",
    ])
