"""The desired configuration the controller pushes (``PUT /v1/config``), and what follows from it.

This is the contract between the controller and the agent; ``docs/agent.md`` shows it in full.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.kit.names import is_canonical

_FP = re.compile(r"[0-9a-f]{64}")


class BundleIn(BaseModel):
    """One certificate with its key; keys are never logged, returned or stored in state.json."""

    model_config = ConfigDict(extra="forbid")
    key_pem: str = Field(repr=False)
    certificate_pem: str
    chain_pem: str = ""


def _check_fp(value: str) -> str:
    if not _FP.fullmatch(value):
        raise ValueError("a fingerprint is 64 lower-case hex digits (SHA-256 of the DER)")
    return value


def _check_names(mapping: dict[str, str]) -> dict[str, str]:
    for name, fp in mapping.items():
        # Names go verbatim into daemon configuration files: refuse anything that is not a
        # canonical host name (the controller's own validator), so nothing can inject syntax.
        if not is_canonical(name, allow_wildcard=True):
            raise ValueError(f"{name!r} is not a lower-case host name (IDNA A-labels)")
        _check_fp(fp)
    return mapping


def _check_autoconfig(mapping: dict[str, str | None]) -> dict[str, str | None]:
    """Domain -> advertised host name (None in a delta: the domain is gone). Both go verbatim
    into nginx's configuration and the documents clients read: canonical host names only."""
    for domain, host in mapping.items():
        if not is_canonical(domain) or (host is not None and not is_canonical(host)):
            raise ValueError(f"{domain!r}: {host!r} is not a lower-case host name (IDNA A-labels)")
    return mapping


MAX_UPLOAD_BUNDLES = 1000


def _check_bundle_keys(bundles: dict) -> dict:
    for fp in bundles:
        _check_fp(fp)
    return bundles


class BundleUpload(BaseModel):
    """``PUT /v1/bundles``: bundles for a configuration that follows (docs/agent.md).

    ``generation`` is the generation whose document will reference them: until that generation
    (or a later one) is applied, the agent does not prune them.
    """

    model_config = ConfigDict(extra="forbid")
    generation: int = Field(ge=1)
    bundles: dict[str, BundleIn] = Field(min_length=1, max_length=MAX_UPLOAD_BUNDLES, repr=False)

    _keys = field_validator("bundles")(_check_bundle_keys)


class Desired(BaseModel):
    """What every daemon on this server should serve; ``bundles`` only carries new material."""

    model_config = ConfigDict(extra="forbid")
    generation: int = Field(ge=0)
    server_hostname: str
    server_certificate: str
    webmail_default: str
    mail: dict[str, str] = Field(default_factory=dict)
    webmail: dict[str, str] = Field(default_factory=dict)
    # Mail client autoconfiguration: each domain of the server -> the host name to advertise.
    autoconfig: dict[str, str] = Field(default_factory=dict)
    bundles: dict[str, BundleIn] = Field(default_factory=dict, repr=False)

    _fp = field_validator("server_certificate", "webmail_default")(_check_fp)
    _names = field_validator("mail", "webmail")(_check_names)
    _autoconfig = field_validator("autoconfig")(_check_autoconfig)

    def referenced(self) -> set[str]:
        """Every fingerprint some daemon will serve."""
        return {
            self.server_certificate,
            self.webmail_default,
            *self.mail.values(),
            *self.webmail.values(),
        }

    def without_bundles(self) -> dict:
        """The document as persisted in state.json: never any key material. An empty
        ``autoconfig`` is left out, so a document from a controller without the feature keeps
        the digest it had (app.kit.digest)."""
        return self.model_dump(exclude={"bundles"} if self.autoconfig else {"bundles", "autoconfig"})


def _check_digest(value: str | None) -> str | None:
    if value is None:
        return value
    if not _FP.fullmatch(value):
        raise ValueError("a digest is 64 lower-case hex digits (app.kit.digest.config_digest)")
    return value


def _check_changes(mapping: dict[str, str | None]) -> dict[str, str | None]:
    """Names exactly as in a full document; ``None`` (remove the name) instead of a fingerprint."""
    _check_names({name: fp for name, fp in mapping.items() if fp is not None})
    for name, fp in mapping.items():
        if fp is None and not is_canonical(name, allow_wildcard=True):
            raise ValueError(f"{name!r} is not a lower-case host name (IDNA A-labels)")
    return mapping


class DesiredDelta(BaseModel):
    """A delta document: the changes against the agent's applied document (docs/agent.md).

    ``base_digest`` is ``config_digest`` of the document the changes apply to, ``digest``
    (optional) that of the result; the agent refuses a delta when either does not match (the
    controller then sends the full document). The controller computes deltas from the changed
    names alone and leaves ``digest`` out; the agent answers with the digest it reached
    (``applied_digest``), which the next delta names as its base.
    """

    model_config = ConfigDict(extra="forbid")
    generation: int = Field(ge=0)
    base_digest: str
    digest: str | None = None
    server_hostname: str
    server_certificate: str
    webmail_default: str
    mail_changes: dict[str, str | None] = Field(default_factory=dict)
    webmail_changes: dict[str, str | None] = Field(default_factory=dict)
    autoconfig_changes: dict[str, str | None] = Field(default_factory=dict)
    bundles: dict[str, BundleIn] = Field(default_factory=dict, repr=False)

    _fp = field_validator("server_certificate", "webmail_default")(_check_fp)
    _digests = field_validator("base_digest", "digest")(_check_digest)
    _changes = field_validator("mail_changes", "webmail_changes")(_check_changes)
    _autoconfig = field_validator("autoconfig_changes")(_check_autoconfig)

    def resolve(self, applied: dict) -> Desired:
        """The full document: ``applied`` (already validated when it was applied) changed.

        Only the changes are validated here; the applied names were checked on their way in,
        so rebuilding does not re-validate thousands of unchanged names.
        """
        maps = {}
        for field in ("mail", "webmail", "autoconfig"):
            names = dict(applied.get(field) or {})
            for name, fp in getattr(self, f"{field}_changes").items():
                if fp is None:
                    names.pop(name, None)
                else:
                    names[name] = fp
            maps[field] = names
        return Desired.model_construct(
            generation=self.generation,
            server_hostname=self.server_hostname,
            server_certificate=self.server_certificate,
            webmail_default=self.webmail_default,
            mail=maps["mail"],
            webmail=maps["webmail"],
            autoconfig=maps["autoconfig"],
            bundles=self.bundles,
        )
