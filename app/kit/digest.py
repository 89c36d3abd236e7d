"""A digest of a server's desired configuration, computed the same way by controller and agent.

The controller compares it with what the agent reports as applied, so an agent that already
serves exactly the desired content at that generation is not pushed again, and an agent whose
generation counter is ahead (a re-registered server, a restored database) is told apart from one
that is up to date; a delta names the digest of the document it applies to (``base_digest``).

Version 2 (``config_digest``, agent feature ``set-digest``) is a **set hash**, so that a delta's
result is digested in O(changed entries) instead of re-serializing 20,000 names:

* every entry ``name -> value`` of a map field (``mail``, ``webmail``, ``autoconfig``: any
  top-level value that is a dict) is hashed on its own, ``SHAKE-256("certpost-entry/2" ||
  netstring(field) || netstring(name) || netstring(value))`` read as a 2048-bit big-endian
  integer (FIPS 202; netstrings, ``<length>:<bytes>,``, make the encoding unambiguous);
* the entries' hashes are **added modulo 2^2048** (:data:`MODULUS`): AdHash, from Bellare and
  Micciancio, "A New Paradigm for Collision-free Hashing: Incrementality at Reduced Cost",
  EUROCRYPT 1997. The sum does not depend on order, and changing one entry is one subtraction
  and one addition. The modulus is that large because of Wagner's generalized birthday attack
  on additive hashes ("A Generalized Birthday Problem", CRYPTO 2002), which finds collisions
  for a 256-bit modulus cheaply; at 2048 bits its cost is about 2^(2·sqrt(2048)) ≈ 2^90. (The
  lattice variant LtHash, Lewi et al., "Securing Update Propagation with Homomorphic Hashing",
  2019, is stronger per byte but lane-wise arithmetic costs about 7× more in pure Python.) The
  digest is a consistency check between two trusted parties over signed requests, not an
  authenticator, so this margin is ample;
* the digest is ``SHA-256("certpost-config-digest/2\\n" || canonical JSON of the other
  top-level keys || "\\n" || the 256-byte sum)``, 64 hex digits as before. ``generation`` and
  ``bundles`` are left out, as in version 1; an empty map and a missing one are the same.

Version 1 (:func:`config_digest_v1`: SHA-256 over canonical JSON of the whole document) is
still what an agent without ``set-digest`` reports; the controller uses it for such an agent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

EXCLUDED = ("generation", "bundles")
BITS = 2048
MODULUS = 1 << BITS
_WIDTH = BITS // 8
_ENTRY = b"certpost-entry/2"
_DOCUMENT = b"certpost-config-digest/2\n"
FEATURE = "set-digest"  # what an agent computing version 2 announces in GET /v1/state


def config_digest_v1(document: dict) -> str:
    """Version 1: SHA-256 over canonical JSON (sorted keys, no spaces) of the document without
    its generation and bundles. Frozen; agents without ``set-digest`` report this one."""
    content = {k: v for k, v in document.items() if k not in EXCLUDED}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _net(text: str) -> bytes:
    data = text.encode()
    return b"%d:%s," % (len(data), data)


def entry_hash(field: str, name: str, value: str) -> int:
    """One map entry's 2048-bit hash (the element the sum adds)."""
    data = _ENTRY + _net(field) + _net(name) + _net(value)
    return int.from_bytes(hashlib.shake_256(data).digest(_WIDTH), "big")


def maps_sum(document: Mapping) -> int:
    """The sum modulo 2^2048 of every map entry's hash: O(entries), once per full document."""
    total = 0
    for field, value in document.items():
        if field not in EXCLUDED and isinstance(value, Mapping):
            for name, item in value.items():
                total += entry_hash(field, name, item)
    return total % MODULUS


def updated_sum(total: int, field: str, before: Mapping[str, str], changes: Mapping[str, str | None]) -> int:
    """``total`` after ``changes`` (name -> new value, None: removed) to map ``field`` whose
    entries were ``before``: O(changes)."""
    for name, value in changes.items():
        old = before.get(name)
        if old == value:
            continue
        if old is not None:
            total -= entry_hash(field, name, old)
        if value is not None:
            total += entry_hash(field, name, value)
    return total % MODULUS


def scalars(document: Mapping) -> dict:
    """The top-level keys that are not maps (nor generation and bundles)."""
    return {k: v for k, v in document.items() if k not in EXCLUDED and not isinstance(v, Mapping)}


def digest_of(head: Mapping, total: int) -> str:
    """Version 2 from the scalars and the maps' sum."""
    canonical = json.dumps(dict(head), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(_DOCUMENT + canonical + b"\n" + total.to_bytes(_WIDTH, "big")).hexdigest()


def config_digest(document: Mapping) -> str:
    """Version 2 of a whole document, from scratch."""
    return digest_of(scalars(document), maps_sum(document))


def digest_for(features, document: Mapping) -> str:
    """The digest an agent announcing ``features`` (its ``GET /v1/state``) computes."""
    return config_digest(document) if FEATURE in (features or ()) else config_digest_v1(dict(document))
