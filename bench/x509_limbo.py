"""How certpost's upload, trust and coverage path agrees with the x509-limbo test suite.

    .venv/bin/python bench/x509_limbo.py /path/to/limbo.json [--json out.json] [--verbose]

x509-limbo (the C2SP project) is a suite of path-validation test cases: trusted roots,
untrusted intermediates, a peer certificate, the name the client expects, a validation time
and the expected result. Its ``limbo.json`` is not part of certpost: get or build it yourself
(docs/x509.md says how) and pass its path.

Every SERVER case whose inputs certpost can express (a DNS name expected; no CRLs; no verifier
settings that certpost fixes for itself, such as a maximum chain depth or a required key
usage) goes through certpost's own functions, in the order an upload and a binding meet them:

1. parse the peer certificate and the intermediates (``kit.x509.load_pem_certificates``);
2. key policy on the leaf (``kit.keypolicy.check_certificate``);
3. the chain rule (``kit.x509.check_chain``: every supplied certificate issued something);
4. the SAN names (``certificates.material.normalised_sans``);
5. trust: ``kit.trust.TrustStore`` built from the case's roots, at the case's time (or now),
   a self-signed leaf never trusted (as ``material._assemble``);
6. the binding rule for the expected name (``domains.rules.check_bindable``: public-suffix
   wildcard, coverage, validity inclusive at both ends).

certpost's verdict is SUCCESS when nothing refuses and the chain is trusted. It is compared
with the case's expected_result. Nothing is written unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.certificates import errors as cert_errors
from app.certificates.material import normalised_sans
from app.domains.rules import check_bindable
from app.kit import keypolicy
from app.kit import x509 as kx
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.kit.trust import TrustStore

SERVER_AUTH_EKU = ("serverAuth", "1.3.6.1.5.5.7.3.1")


@dataclass
class Facts:
    """What ``domains.rules`` reads from a stored certificate."""

    sans: list[str]
    not_before: datetime
    not_after: datetime
    trusted: bool
    self_signed: bool


def skip_reason(case: dict) -> str | None:
    """Why certpost cannot express this case, or None when it can."""
    if case["validation_kind"] != "SERVER":
        return "client validation (certpost stores server certificates)"
    peer = case.get("expected_peer_name")
    if not peer:
        return "no expected peer name (certpost always binds a host name)"
    if peer["kind"] != "DNS":
        return f"{peer['kind']} peer name (certpost binds DNS names only)"
    if case.get("expected_peer_names"):
        return "several expected peer names"
    if case.get("crls") or "has-crl" in (case.get("features") or []):
        return "CRLs (certpost does not check revocation)"
    if case.get("max_chain_depth") is not None:
        return "a maximum chain depth (certpost's is fixed)"
    if case.get("signature_algorithms"):
        return "a restricted signature-algorithm set (certpost's is fixed)"
    if case.get("key_usage"):
        return "a required key usage (certpost requires none of its own)"
    if any(eku not in SERVER_AUTH_EKU for eku in case.get("extended_key_usage") or []):
        return "an EKU other than serverAuth"
    return None


def _time(case: dict) -> datetime:
    raw = case.get("validation_time")
    if not raw:
        return utc_now()
    when = datetime.fromisoformat(raw)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def certpost_verdict(case: dict) -> tuple[bool, str]:
    """(accepted, reason): what certpost makes of the case's material and name."""
    now = _time(case)
    try:
        certs = kx.load_pem_certificates(case["peer_certificate"])
        intermediates = [c for pem in case["untrusted_intermediates"] for c in kx.load_pem_certificates(pem)]
        roots = [c for pem in case["trusted_certs"] for c in kx.load_pem_certificates(pem)]
    except kx.MaterialError as exc:
        return False, f"{exc.code}: {exc}"
    except Exception as exc:  # noqa: BLE001  (a certificate cryptography refuses in an unusual way)
        return False, f"invalid_certificate: {type(exc).__name__}: {exc}"
    leaf = certs[0]
    try:
        keypolicy.check_certificate(leaf)
        kx.check_chain(leaf, intermediates)
        sans = normalised_sans(leaf)
    except kx.MaterialError as exc:
        return False, f"{exc.code}: {exc}"
    except Exception as exc:  # noqa: BLE001  (certificates/reading.py answers these invalid_certificate)
        return False, f"invalid_certificate: unreadable ({type(exc).__name__}: {exc})"
    try:
        hostname = normalise_hostname(case["expected_peer_name"]["value"])
    except InvalidName as exc:
        return False, f"invalid_hostname: {exc}"
    self_signed = kx.is_self_signed(leaf)
    try:
        store = TrustStore(roots)
        trusted = not self_signed and store.verifies(leaf, intermediates, sans, now=now)
    except Exception as exc:  # noqa: BLE001  (reported as the case's outcome)
        return False, f"untrusted: verifier error {type(exc).__name__}: {exc}"
    facts = Facts(sans, leaf.not_valid_before_utc, leaf.not_valid_after_utc, trusted, self_signed)
    try:
        check_bindable(facts, hostname, now)
    except cert_errors.RuleViolation as exc:
        return False, f"{exc.code}: {exc}"
    if not trusted:
        return False, "untrusted: self-signed leaf" if self_signed else "untrusted: the path does not verify"
    return True, "accepted"


def verifier_alone(case: dict) -> str:
    """What ``cryptography``'s verifier says by itself (as x509-limbo's own harness calls it)."""
    from cryptography.x509 import DNSName, load_pem_x509_certificate
    from cryptography.x509.verification import PolicyBuilder, Store

    try:
        roots = [load_pem_x509_certificate(p.encode()) for p in case["trusted_certs"]]
        pool = [load_pem_x509_certificate(p.encode()) for p in case["untrusted_intermediates"]]
        leaf = load_pem_x509_certificate(case["peer_certificate"].encode())
        builder = PolicyBuilder().store(Store(roots))
        if case.get("validation_time"):
            builder = builder.time(_time(case))
        builder.build_server_verifier(DNSName(case["expected_peer_name"]["value"])).verify(leaf, pool)
    except Exception as exc:  # noqa: BLE001  (any refusal is a FAILURE, as in limbo's harness)
        return f"FAILURE ({type(exc).__name__})"
    return "SUCCESS"


def _first_line(text: str | None) -> str:
    return " ".join((text or "").split())[:160]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("limbo", type=Path, help="path to limbo.json")
    parser.add_argument("--json", type=Path, help="write every case's outcome here")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()

    cases = json.loads(args.limbo.read_text())["testcases"]
    skipped: Counter[str] = Counter()
    agree = 0
    disagreements: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    outcomes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # negative serials and the like: cryptography warns, loads
        for case in cases:
            reason = skip_reason(case)
            if reason is not None:
                skipped[reason] += 1
                outcomes.append({"id": case["id"], "skipped": reason})
                continue
            accepted, why = certpost_verdict(case)
            expected = case["expected_result"] == "SUCCESS"
            outcomes.append({"id": case["id"], "expected": case["expected_result"], "certpost": why})
            if args.verbose:
                print(f"{'ok ' if accepted == expected else 'XX '} {case['id']}: {why}")
            if accepted == expected:
                agree += 1
                continue
            kind = "certpost accepts, limbo expects FAILURE" if accepted else "certpost refuses, limbo expects SUCCESS"
            disagreements[kind].append((case["id"], why, verifier_alone(case), _first_line(case.get("description"))))

    run = len(cases) - sum(skipped.values())
    disagree = sum(len(v) for v in disagreements.values())
    print(f"limbo cases: {len(cases)}; run: {run}; skipped: {sum(skipped.values())}")
    for reason, n in skipped.most_common():
        print(f"  skipped {n:4d}  {reason}")
    print(f"agree: {agree}   disagree: {disagree}")
    for kind, rows in sorted(disagreements.items()):
        print(f"\n== {kind} ({len(rows)})")
        by_reason: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
        for row in rows:
            by_reason[row[1].split(":")[0]].append(row)
        for code, items in sorted(by_reason.items()):
            print(f"-- certpost: {code} ({len(items)})")
            for case_id, why, alone, description in items:
                print(f"   {case_id}\n      certpost: {_first_line(why)}\n"
                      f"      cryptography's verifier alone: {alone}\n      limbo:    {description}")
    if args.json:
        args.json.write_text(json.dumps({"run": run, "agree": agree, "disagree": disagree,
                                         "skipped": dict(skipped), "cases": outcomes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
