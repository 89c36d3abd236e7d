"""Host names: the one validator the controller and the agent share.

Certificates carry A-labels (RFC 5280 section 7.2), so every name is compared, stored and
written into daemon configuration in that form: lower case, IDNA A-labels, no trailing dot.

The rules, and why:

- IDNA 2008 (RFC 5890-5893) with the UTS #46 mapping (non-transitional), through the ``idna``
  package. Python's built-in ``idna`` codec is IDNA 2003, which maps ``faß`` to ``fass``: a
  different domain from the one browsers and resolvers use today (``xn--fa-hia``).
- An A-label given as such (``xn--...``) must decode to a valid U-label (RFC 5891 section
  5.4); ``xn--zz`` is refused instead of being stored as an opaque string.
- The whole text is checked, with no regex anchor that could stop before a final newline
  (``$`` does): a name ends up verbatim in Postfix, Dovecot and nginx configuration files, so
  a control character or a space is never part of a name (RFC 1123 section 2.1 LDH rule).
- A name has at least two labels and at most 253 characters (RFC 1035 section 2.3.4).

``normalise_hostname`` turns what a person typed into the canonical form; ``is_canonical``
answers whether a string already is that form, for the agent, which only accepts names the
controller has already normalised.
"""

from __future__ import annotations

import re

import idna

# A lower-case LDH label (RFC 1123 section 2.1); used with fullmatch only.
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Anything below U+0021 or in DEL/C1: never part of a name, whatever the mapping would do.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_MAX_INPUT = 1024
MAX_NAME_LENGTH = 253


class InvalidName(ValueError):
    code = "invalid_name"


def normalise_hostname(name: str, *, allow_wildcard: bool = False) -> str:
    """Return ``name`` as lower-case A-labels without a trailing dot, or raise InvalidName.

    ``allow_wildcard`` admits a single ``*`` as the whole left-most label (certificate SANs,
    RFC 6125 section 6.4.3).
    """
    if not isinstance(name, str):
        raise InvalidName("the name must be a string")
    if len(name) > _MAX_INPUT:
        raise InvalidName(f"the name is longer than {MAX_NAME_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(name):
        raise InvalidName("the name contains a space or a control character")
    text = name.removesuffix(".")
    if not text:
        raise InvalidName("the name is empty")
    wildcard = text == "*" or text.startswith("*.")
    if wildcard and not allow_wildcard:
        raise InvalidName("a wildcard is not allowed here")
    rest = text[2:] if wildcard else text
    labels = [_to_a_label(label) for label in _mapped(rest).split(".")]
    if len(labels) < 2:
        raise InvalidName("the name needs at least two labels (for example example.com)")
    result = ".".join((["*"] if wildcard else []) + labels)
    if len(result) > MAX_NAME_LENGTH:
        raise InvalidName(f"the name is longer than {MAX_NAME_LENGTH} characters")
    return result


def is_canonical(name: str, *, allow_wildcard: bool = False) -> bool:
    """True when ``name`` is exactly what ``normalise_hostname`` returns for it."""
    try:
        return normalise_hostname(name, allow_wildcard=allow_wildcard) == name
    except InvalidName:
        return False


def _mapped(text: str) -> str:
    """UTS #46 mapping (case folding, width, compatibility forms), non-transitional."""
    if text.isascii():
        return text.lower()  # the mapping of ASCII is lower-casing (std3 checks follow per label)
    if "*" in text:
        raise InvalidName("a wildcard may only be the whole left-most label")
    try:
        return idna.uts46_remap(text, std3_rules=True)
    except idna.IDNAError as exc:
        raise InvalidName(f"the name is not a valid internationalised name ({exc})") from None


def _to_a_label(label: str) -> str:
    if not label:
        raise InvalidName("the name has an empty label")
    if "*" in label:
        raise InvalidName("a wildcard may only be the whole left-most label")
    if label.isascii() and _LDH.fullmatch(label) and label[2:4] != "--":
        return label  # fast path: an LDH label that is not an A-label is its own A-label
    try:
        a_label = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidName(f"the label {label!r} is not a valid host name label ({exc})") from None
    if not _LDH.fullmatch(a_label):
        raise InvalidName(f"the label {label!r} is not a valid host name label")
    return a_label


def parent(name: str) -> str | None:
    """``mail.example.com`` -> ``example.com``; None when fewer than two labels would remain."""
    rest = name.partition(".")[2]
    return rest if "." in rest else None
