"""What changed between the document an agent applied and the desired one: a pure function.

Sending only the changed host names keeps a one-domain change small on a server with
thousands of domains: the agent rebuilds the full document from its own applied copy and
checks both digests (``base_digest`` before, ``digest`` after), so a mismatch is refused
rather than guessed at, and the controller then falls back to the full document.
"""

from __future__ import annotations

from app.kit.digest import config_digest

SCALARS = ("server_hostname", "server_certificate", "webmail_default")


def _changes(old: dict[str, str], new: dict[str, str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {name: None for name in old.keys() - new.keys()}
    out.update({name: fp for name, fp in new.items() if old.get(name) != fp})
    return dict(sorted(out.items()))


def delta_document(applied: dict, desired: dict) -> dict:
    """The delta that turns ``applied`` into ``desired`` (both full documents, no bundles)."""
    return {
        "generation": desired["generation"],
        "base_digest": config_digest(applied),
        "digest": config_digest(desired),
        **{key: desired[key] for key in SCALARS},
        "mail_changes": _changes(applied.get("mail", {}), desired.get("mail", {})),
        "webmail_changes": _changes(applied.get("webmail", {}), desired.get("webmail", {})),
    }
