"""Blast radius of one: which names are held back, and what the daemons serve instead.

The controller's document says what every name *should* serve (the desired view). When one
name's certificate cannot be served — its bundle is refused by OpenSSL (``app.agent.tlscheck``)
or the name fails handshake verification after the reload — the agent applies everything else
and keeps that name on what it served before: its previous fingerprint, or no entry at all if
it had none, so it gets the server default (Postfix: no ``tls_server_sni_maps`` key; Dovecot: no
``local_name`` block; nginx: the ``map`` default; Courier: no per-name file). The served view
is the desired view with those names put back; it is what the backends render, what the next
change is verified against, and what the bundle store must keep.

Failures that are not one name's (the server-wide certificate, the webmail default, a daemon
that does not validate, reload or start) still roll the whole change back.

Everything here is pure: views in, views and failure records out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.agent.backends.base import View

SERVICES = ("mail", "webmail")


@dataclass(frozen=True)
class NameFailure:
    """One held-back name, as reported in ``PUT /v1/config`` and ``GET /v1/state``.

    ``fingerprint`` is the certificate the controller asked for; ``serving`` the one the name
    is kept on (None: the name has no entry and gets the server default).
    """

    name: str
    service: str  # "mail" | "webmail"
    fingerprint: str
    code: str  # "invalid_bundle" | "key_refused" | "handshake_failed" | "verify_failed"
    message: str
    serving: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NameFailure:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def names(view: View, service: str) -> dict[str, str]:
    return view.mail if service == "mail" else view.webmail


def held_back(
    desired: View,
    served_before: View | None,
    bad: dict[str, tuple[str, str]],
    carried: list[NameFailure],
) -> list[NameFailure]:
    """The names to hold back in this change.

    ``bad`` maps an unusable fingerprint to (code, message); ``carried`` are the previous
    change's failures. A verification failure is kept while the name still asks for the same
    fingerprint (retrying it costs a reload, a rollback and the verify timeout on every
    change; a new certificate for the name, or its removal, clears it). The other failures are
    found again each time at no cost to what is live (the bundle check, validation-only runs),
    so a fix on the server's side (a larger ``map_hash_bucket_size``) is picked up by the next
    change.
    """
    if not bad:  # the usual change: only carried verification failures can stay
        out = []
        kept = [f for f in carried if f.service in SERVICES and f.code == "verify_failed"]
        for old in sorted(kept, key=lambda f: (SERVICES.index(f.service), f.name)):
            fp = names(desired, old.service).get(old.name)
            previous = names(served_before, old.service).get(old.name) if served_before else None
            if old.fingerprint == fp and previous != fp:
                out.append(NameFailure(old.name, old.service, fp, old.code, old.message, previous))
        return out
    carried_by_key = {(f.service, f.name): f for f in carried}
    out: list[NameFailure] = []
    for service in SERVICES:
        before = names(served_before, service) if served_before else {}
        for name, fp in sorted(names(desired, service).items()):
            previous = before.get(name)
            if fp in bad:
                code, message = bad[fp]
                out.append(NameFailure(name, service, fp, code, message, previous))
                continue
            old = carried_by_key.get((service, name))
            if (
                old is not None
                and old.code == "verify_failed"
                and old.fingerprint == fp
                and previous != fp
            ):
                out.append(NameFailure(name, service, fp, old.code, old.message, previous))
    return out


def served_view(desired: View, failures: list[NameFailure]) -> View:
    """``desired`` with each held-back name put back on what it served before.

    A held-back ``mail.<d>`` that falls back to the server-wide certificate is not advertised
    to mail clients either: its domain's autoconfiguration names the server's host name, which
    is what that certificate was made for (the controller's rule cannot know the name failed).
    """
    if not failures:
        return desired
    maps = {"mail": dict(desired.mail), "webmail": dict(desired.webmail)}
    autoconfig = dict(desired.autoconfig)
    # The held-back names join the names ``desired`` says it changed (View.changes_since).
    changed = None if desired.changed is None else {
        key: set(desired.changed.get(key, ())) for key in ("mail", "webmail", "autoconfig")
    }
    for failure in failures:
        if changed is not None:
            changed[failure.service].add(failure.name)
        if failure.serving is None:
            maps[failure.service].pop(failure.name, None)
            domain = failure.name.split(".", 1)[-1]
            if failure.service == "mail" and autoconfig.get(domain) == failure.name and desired.server_hostname:
                autoconfig[domain] = desired.server_hostname
                if changed is not None:
                    changed["autoconfig"].add(domain)
        else:
            maps[failure.service][failure.name] = failure.serving
    return View(
        desired.server_certificate,
        desired.webmail_default,
        maps["mail"],
        maps["webmail"],
        desired.server_hostname,
        autoconfig,
        base=desired.base,
        changed=changed,
    )


def referenced(view: View) -> set[str]:
    return {
        view.server_certificate,
        view.webmail_default,
        *view.mail.values(),
        *view.webmail.values(),
    }


def to_check(desired: View, served_before: View | None) -> set[str]:
    """Fingerprints the desired view serves that the daemons do not serve already.

    A served bundle passed this check (or verification) when it went live; checking only the
    new ones keeps a one-name change at one handshake on a server with thousands of names.
    When ``desired`` was made from ``served_before`` by named changes (a delta), only the
    fingerprints of those names are candidates, each looked for among the served ones by a
    scan in C instead of building two sets of every fingerprint.
    """
    if served_before is None:
        return referenced(desired)
    candidates = {desired.server_certificate, desired.webmail_default}
    for service in SERVICES:
        changed = desired.changes_since(served_before.token, service)
        if changed is None:
            return referenced(desired) - referenced(served_before)
        current = names(desired, service)
        candidates.update(fp for n in changed if (fp := current.get(n)) is not None)
    served = {served_before.server_certificate, served_before.webmail_default}
    return {
        fp for fp in candidates
        if fp not in served and fp not in served_before.mail.values()
        and fp not in served_before.webmail.values()
    }


def verify_culprits(
    probes: list[dict], served: View, served_before: View | None
) -> dict[tuple[str, str], str] | None:
    """(service, name) -> error for a failed verification that is only some names' fault.

    Attributable when every failed probe was for a bound name whose certificate changed in
    this change; a failed probe without SNI, for the unknown name, or for a name that did not
    change means something server-wide broke, and the whole change is rolled back (None).
    """
    culprits: dict[tuple[str, str], str] = {}
    for probe in probes:
        service, name = probe.get("service"), probe.get("name")
        if service not in SERVICES or not name:
            return None
        now = names(served, service).get(name)
        before = names(served_before, service).get(name) if served_before else None
        if now is None or now == before:
            return None
        culprits.setdefault((service, name), probe.get("error") or "verification failed")
    return culprits or None
