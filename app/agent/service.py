"""The agent's rules around the pipeline: generations, missing bundles, state, bootstrap.

One apply runs at a time (an asyncio lock); a generation is applied exactly once, and the
result of the applied generation is returned again if it is pushed again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections import Counter

from app.agent.apply import ApplyFailed, Pipeline
from app.agent.backends.base import View
from app.agent.backends.nginx import NginxBackend
from app.agent.backends.registry import make_backends
from app.agent.bundles import BundleError, BundleStore, build_bundle
from app.agent.challenges import ChallengeIn, ChallengeStore, valid_token
from app.agent.config import AgentConfig
from app.agent.desired import BundleUpload, Desired, DesiredDelta
from app.agent.drift import DriftMonitor
from app.agent.identity import self_signed
from app.agent.isolated import IsolatedApply
from app.agent.isolation import NameFailure, referenced, served_view
from app.agent.metrics import AgentMetrics
from app.agent.problems import AgentProblem
from app.agent.state import (
    JOURNAL_MAX,
    AgentState,
    StateFile,
    canonical_document,
    journal_size,
    merge_journal,
)
from app.kit.digest import FEATURE as SET_DIGEST
from app.kit.digest import digest_of, maps_sum, scalars, updated_sum
from app.kit.x509 import fingerprint_sha256, load_pem_certificates

log = logging.getLogger("certpost.agent")

SCALARS = ("server_hostname", "server_certificate", "webmail_default")


def _view(desired: dict | Desired, base: View | None = None, changed: dict | None = None) -> View:
    """The view of a document, sharing its maps (a document is never changed once made: a
    delta makes a new one). ``base`` and ``changed``: the view it was made from and the names
    that differ (View.changes_since)."""
    d = desired.model_dump() if isinstance(desired, Desired) else desired
    return View(
        d["server_certificate"],
        d["webmail_default"],
        d["mail"],
        d["webmail"],
        d.get("server_hostname") or "",
        d.get("autoconfig") or {},
        base=base.token if base is not None and changed is not None else None,
        changed=changed if base is not None else None,
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _timestamp(moment: str | None) -> float:
    """Unix time of a stored ``_now()``; 0 when none (never applied) or unreadable."""
    try:
        return dt.datetime.fromisoformat(moment).timestamp() if moment else 0.0
    except ValueError:
        return 0.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = BundleStore(config.state_dir / "bundles")
        self.state_file = StateFile(config.state_dir / "state.json")
        # The agent process is the only writer of its state: loaded once, kept in memory, and
        # persisted (atomically) whenever it changes.
        self.st = self.state_file.load()
        self.backends = make_backends(config)
        self.metrics = AgentMetrics()
        self.metrics.record_applied(
            self.st.applied_generation, len(self.st.failed_names or []), _timestamp(self.st.last_applied_at)
        )
        self.pipeline = Pipeline(
            self.store,
            self.backends,
            verify_timeout=config.verify_timeout,
            verify_sample=config.verify_sample,
            metrics=self.metrics,
        )
        self.isolated = IsolatedApply(self.pipeline, self.store)
        self.lock = asyncio.Lock()
        self.drift = DriftMonitor(self.backends, self.lock, self._served_before, config.drift_interval,
                                  config.drift_sample, metrics=self.metrics)
        # Bundles received by PUT /v1/bundles for a generation not applied yet: fingerprint ->
        # that generation. Kept from pruning until a generation at least as new is applied
        # (in memory: after a restart nothing is pruned before the next apply anyway).
        self.staged: dict[str, int] = {}
        nginx = next((b for b in self.backends if isinstance(b, NginxBackend)), None)
        self.challenges = ChallengeStore(nginx.challenge_dir) if nginx else None
        # The served view of the applied document (_served_before), kept with that document.
        self._served: tuple[dict, View] | None = None
        # How many names of the applied document's mail and webmail maps name each
        # fingerprint, kept up to date by a delta's changes (None: count them at the next
        # prune), and the bundles stored since the last prune that nothing may name: so a
        # delta prunes the bundle store by its changes, not by two sets of every fingerprint.
        self._fp_count: Counter[str] | None = None
        self._unsettled: set[str] = set()

    def prepare_challenges(self) -> None:
        """Create the HTTP-01 directory nginx serves, so its first start finds it."""
        if self.challenges is not None:
            self.challenges.ensure()

    def challenge_store(self, token: str) -> ChallengeStore:
        if not valid_token(token):
            raise AgentProblem(
                400, "invalid_token", "Invalid token", "a token is 1 to 128 of A-Z a-z 0-9 _ -"
            )
        if self.challenges is None:
            raise AgentProblem(
                409,
                "http01_unavailable",
                "HTTP-01 unavailable",
                "this agent has no [nginx] section, so nothing can serve HTTP-01 answers",
            )
        return self.challenges

    def put_challenge(self, token: str, challenge: ChallengeIn) -> dict:
        """Publish an HTTP-01 answer; no reload (nginx reads the file per request)."""
        store = self.challenge_store(token)
        if not challenge.key_authorization.startswith(token + "."):
            raise AgentProblem(
                400,
                "invalid_request",
                "Invalid request",
                "the key authorization must start with the token followed by '.'",
                errors=[],
            )
        store.publish(token, challenge.key_authorization)
        return {"token": token, "published": True}

    def delete_challenge(self, token: str) -> dict:
        if not self.challenge_store(token).withdraw(token):
            raise AgentProblem(
                404, "not_found", "Not found", "no answer is published for this token"
            )
        return {"token": token, "published": False}

    def observations(self, epoch: str | None, after: int, limit: int) -> dict:
        """``GET /v1/observations``: what the drift rounds saw (app.agent.drift)."""
        page = self.drift.observations.page(epoch, after, limit)
        page["interval"] = self.config.drift_interval
        page["sample"] = self.config.drift_sample
        return page

    def state(self) -> dict:
        st = self.st
        return {
            "applied_generation": st.applied_generation,
            "applied_digest": st.applied_digest if st.desired else None,
            "fingerprints": self.store.held(),
            "last_error": st.last_error,
            "last_applied_at": st.last_applied_at,
            # Names of the applied document held back on what they served before (isolation).
            "failed_names": st.failed_names or [],
            # What this agent understands beyond full documents; the controller checks it.
            # ``set-digest``: applied_digest is app.kit.digest's version 2 (a set hash).
            "features": ["delta-config", "bundle-upload", "observations", "autoconfig", SET_DIGEST],
            # The largest body the request gate accepts; the controller sizes its chunks by it.
            "max_body_bytes": self.config.limits.max_body_bytes,
            # The TLS front this agent runs ([haproxy]), for an operator to compare with the
            # server's tls_front in the controller (which an administrator sets).
            "tls_front": "haproxy" if self.config.haproxy else None,
        }

    async def bootstrap(self) -> bool:
        """Write a self-signed server bundle and the daemons' files if nothing was ever applied.

        Runs before the daemons start (no reload, no verify) so that their configuration can
        name the agent's files from the first start; after an upgrade, writes the files the new
        version names (the applied document, unchanged). Returns True when it wrote anything.
        """
        st = self.st
        if st.desired is not None:
            if any(b.missing_files() for b in self.backends):
                # An upgrade that added files (the Postfix SNI shards): write them from the
                # applied document, as at bootstrap, before the daemons are pointed at them.
                await self.pipeline.apply(self._served_before(), None, live=False)
                return True
            return False
        key_pem, cert_pem = self_signed(self.config.hostname)
        fp = fingerprint_sha256(load_pem_certificates(cert_pem)[0])
        self.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store.put(fp, key_pem, cert_pem)
        desired = {
            "generation": 0,
            "server_hostname": self.config.hostname,
            "server_certificate": fp,
            "webmail_default": fp,
            "mail": {},
            "webmail": {},
        }
        await self.pipeline.apply(_view(desired), None, live=False)
        total = maps_sum(desired)
        st = AgentState(
            applied_generation=0, desired=desired, last_applied_at=_now(),
            applied_digest=digest_of(scalars(desired), total), applied_sum=total,
        )
        canonical = canonical_document(desired)
        self.state_file.save(st, canonical)
        self.st = st
        return True

    async def put_bundles(self, upload: BundleUpload) -> dict:
        """Check and store bundles for a configuration that follows; apply nothing.

        Each bundle gets the checks of ``PUT /v1/config`` (:func:`build_bundle`); a sound one is
        stored and held back from pruning until generation ``upload.generation`` (or a newer
        one) is applied; an unsound one is not stored and is listed in ``refused`` (the
        controller sends it in the document, where it is that name's failure).
        """
        async with self.lock:
            st = self.st
            if upload.generation <= st.applied_generation:
                raise AgentProblem(
                    409,
                    "stale_generation",
                    "Stale generation",
                    f"generation {upload.generation} is not newer than the applied "
                    f"generation {st.applied_generation}",
                    applied_generation=st.applied_generation,
                )
            bad = self._store_bundles(upload.bundles)
            for fp in upload.bundles:
                if fp not in bad:
                    self.staged[fp] = max(self.staged.get(fp, 0), upload.generation)
            refused = [
                {"fingerprint": fp, "code": code, "message": message}
                for fp, (code, message) in sorted(bad.items())
            ]
            log.info(
                "stored %d bundle(s) for generation %s (%d refused)",
                len(upload.bundles) - len(bad),
                upload.generation,
                len(refused),
            )
            return {
                "generation": upload.generation,
                "stored": len(upload.bundles) - len(bad),
                "refused": refused,
            }

    def _keep_staged(self, applied_generation: int) -> set[str]:
        """Staged bundles still waiting for their generation (the others are now ordinary)."""
        self.staged = {fp: g for fp, g in self.staged.items() if g > applied_generation}
        return set(self.staged)

    async def put_config(self, desired: Desired | DesiredDelta) -> tuple[int, dict]:
        async with self.lock:
            return await self._put_config(desired)

    @staticmethod
    def _resolve(delta: DesiredDelta, st: AgentState) -> tuple[Desired, dict, int, str, dict]:
        """The full document a delta describes (the model, the document as persisted), its
        digest's sum and digest, computed from the changes alone (app.kit.digest, version 2),
        and the journal with the changes on top; or 409 ``base_mismatch`` / ``digest_mismatch``."""
        applied = st.desired
        applied_digest = st.applied_digest if applied else None
        if applied_digest != delta.base_digest:
            raise AgentProblem(
                409,
                "base_mismatch",
                "Base mismatch",
                "base_digest is not the digest of the applied document; send the full document",
                applied_digest=applied_digest,
            )
        total = st.applied_sum if st.applied_sum is not None else maps_sum(applied)
        journal = st.applied_changes
        for field in ("mail", "webmail", "autoconfig"):
            changes = getattr(delta, f"{field}_changes")
            total = updated_sum(total, field, applied.get(field) or {}, changes)
            journal = merge_journal(journal, field, changes)
        desired = delta.resolve(applied)
        # Desired.without_bundles() without a model_dump of 20,000 names.
        document = {key: getattr(desired, key) for key in ("generation", *SCALARS, "mail", "webmail")}
        if desired.autoconfig:
            document["autoconfig"] = desired.autoconfig
        digest = digest_of(scalars(document), total)
        if delta.digest is not None and digest != delta.digest:
            raise AgentProblem(
                409,
                "digest_mismatch",
                "Digest mismatch",
                "the applied document with these changes does not have the given digest; "
                "send the full document",
            )
        return desired, document, total, digest, journal

    async def _put_config(self, desired: Desired | DesiredDelta) -> tuple[int, dict]:
        st = self.st
        if desired.generation < st.applied_generation or (
            desired.generation == st.applied_generation and st.last_result is None
        ):
            raise AgentProblem(
                409,
                "stale_generation",
                "Stale generation",
                f"generation {desired.generation} is not newer than the applied "
                f"generation {st.applied_generation}",
                applied_generation=st.applied_generation,
            )
        if desired.generation == st.applied_generation:
            return 200, st.last_result  # exactly once per generation: the same answer again
        previous = self._served_before()
        named: dict[str, set[str]] | None = None
        if isinstance(desired, DesiredDelta):
            # The applied document's other fingerprints are held (pruning keeps them).
            new_refs = {fp for field in ("mail", "webmail") for fp in getattr(desired, f"{field}_changes").values()}
            new_refs |= {desired.server_certificate, desired.webmail_default}
            new_refs.discard(None)
            # The names that differ from what the daemons serve: the delta's, and the names
            # held back last time (the served view had them on their earlier certificate).
            named = {field: set(getattr(desired, f"{field}_changes")) for field in ("mail", "webmail", "autoconfig")}
            # (A held-back mail name may have had its domain's autoconfiguration changed too.)
            for failure in st.failed_names or []:
                name = failure.get("name") or ""
                named.setdefault(failure.get("service"), set()).add(name)
                named["autoconfig"].add(name.split(".", 1)[-1])
            desired, document, total, digest, journal = self._resolve(desired, st)
        else:
            document = desired.without_bundles()
            total = digest = journal = None  # digested only once applied
            new_refs = desired.referenced()
        missing = sorted(
            fp
            for fp in new_refs
            if fp not in desired.bundles and not self.store.has(fp)
        )
        if missing:
            raise AgentProblem(
                409,
                "missing_bundles",
                "Missing bundles",
                f"{len(missing)} referenced certificate(s) are neither held nor sent",
                missing=missing,
            )
        bad = self._store_bundles(desired.bundles)
        for fp in (desired.server_certificate, desired.webmail_default):
            if bad.get(fp, ("",))[0] == "invalid_bundle":  # server-wide: refused as a whole
                raise AgentProblem(
                    422, "invalid_bundle", "Invalid bundle", bad[fp][1], fingerprint=fp
                )
        desired_view = _view(document, previous, named)
        carried = [NameFailure.from_dict(f) for f in st.failed_names or []]
        drifted = self.drift.observations.drifted()
        self.pipeline.repair = self.drift.repair_plan(drifted)
        try:
            outcome, failures, served = await self.isolated.apply(
                desired_view, previous, bad, carried
            )
        except ApplyFailed as failed:
            result = {"generation": desired.generation, **failed.result}
            failed_st = dataclasses.replace(st, last_error={**result, "at": _now()})
            self.state_file.save(failed_st)  # small: the applied document is unchanged
            self.st = failed_st
            log.warning(
                "generation %s failed at %s (%s); rolled back: %s",
                desired.generation,
                result.get("step"),
                result.get("daemon"),
                result.get("rolled_back"),
            )
            return 422, {**result, "code": "apply_failed"}
        finally:
            self.pipeline.repair = {}  # a repair is for this apply only
        failed_names = [f.as_dict() for f in failures]
        result = {
            "status": "applied",
            "generation": desired.generation,
            **outcome,
            "failed_names": failed_names,
        }
        if total is None:  # a full document: digested once, O(names)
            total = maps_sum(document)
            digest = digest_of(scalars(document), total)
        result["applied_digest"] = digest
        new_st = AgentState(
            applied_generation=desired.generation,
            desired=document,
            last_result=result,
            last_error=None,
            last_applied_at=_now(),
            applied_digest=digest,
            failed_names=failed_names,
            applied_file=st.applied_file,
            applied_changes=st.applied_changes,
            applied_sum=total,
        )
        # The document file only when a full document changed the content, or when the journal
        # of deltas grew past JOURNAL_MAX entries; a delta otherwise adds to the journal in
        # state.json (O(changes)), and a re-push of the same content writes no document.
        canonical = None
        if journal is not None and journal_size(journal) <= JOURNAL_MAX:
            new_st.applied_changes = journal
        elif digest != st.applied_digest or st.applied_file is None:
            canonical = canonical_document(document)
        self.state_file.save(new_st, canonical)
        self._prune(st.desired, document, served, desired.generation, named, failures)
        self.st = new_st
        self._served = (document, served)
        self.metrics.record_applied(desired.generation, len(failed_names))
        if drifted:
            await self.drift.recheck(drifted)  # what the repair achieved, for the controller
            log.info("drift repair: %d of %d drifted probe(s) still drifted",
                     len(self.drift.observations.drifted() & drifted), len(drifted))
        changed = (
            ", ".join(name for name, flag in (outcome.get("changed") or {}).items() if flag)
            or "nothing"
        )
        log.info(
            "applied generation %s (changed: %s; %d new bundles)",
            desired.generation,
            changed,
            len(desired.bundles),
        )
        for failure in failures:
            log.warning(
                "generation %s: %s %s held back on %s: %s (%s)",
                desired.generation,
                failure.service,
                failure.name,
                failure.serving or "the server default",
                failure.code,
                failure.message,
            )
        return 200, result

    def _prune(self, before: dict | None, document: dict, served: View, generation: int,
               named: dict[str, set[str]] | None, failures: list[NameFailure]) -> None:
        """Remove the held bundles nothing refers to any more: not the applied document, not
        what is served (held-back names keep their earlier bundle), not a staged upload.

        After a delta (``named``: its names; ``before``: the document it changed) the
        candidates are the bundles those names, the scalars and the held-back names named
        before, and the bundles stored since the last prune; a fingerprint count of the
        document's maps, kept up to date by the changes, says which are still named.
        """
        staged_before = set(self.staged)
        kept_staged = self._keep_staged(generation)
        count = self._fp_count
        if named is None or before is None or count is None:
            self._fp_count = Counter(document["mail"].values())
            self._fp_count.update(document["webmail"].values())
            self._unsettled.clear()
            self.store.prune(
                {document["server_certificate"], document["webmail_default"], *self._fp_count}
                | referenced(served) | kept_staged
            )
            return
        candidates = {before["server_certificate"], before["webmail_default"]}
        candidates |= self._unsettled | (staged_before - kept_staged)
        for field in ("mail", "webmail"):
            old, new = before[field], document[field]
            for name in named.get(field, ()):
                was, now = old.get(name), new.get(name)
                if was != now:
                    if was is not None:
                        count[was] -= 1
                        candidates.add(was)
                    if now is not None:
                        count[now] += 1
        previous = self._served[1] if self._served is not None else None
        if previous is not None:  # what held-back names served until now
            for field in ("mail", "webmail"):
                prior = previous.mail if field == "mail" else previous.webmail
                candidates.update(fp for name in named.get(field, ()) if (fp := prior.get(name)))
        keep = {document["server_certificate"], document["webmail_default"], *kept_staged}
        keep.update(f.serving for f in failures if f.serving)
        gone = {fp for fp in candidates if fp not in keep and count.get(fp, 0) <= 0}
        for fp in list(gone):
            count.pop(fp, None)
        self._unsettled.clear()
        self.store.prune_only(gone)

    def _store_bundles(self, bundles: dict) -> dict[str, tuple[str, str]]:
        """Store each received bundle that is sound; return the unsound ones' (code, message).

        One tenant's bad material is that tenant's failure (app.agent.isolation), not the
        whole document's, so a bundle that does not parse or whose key is not its leaf's is
        reported against the names bound to it instead of refusing everything.
        """
        bad: dict[str, tuple[str, str]] = {}
        for fp, bundle in bundles.items():
            try:
                key_pem, certs_pem = build_bundle(fp, bundle)
            except BundleError as exc:
                bad[fp] = ("invalid_bundle", str(exc))
                continue
            self.store.put(fp, key_pem, certs_pem)
            self._unsettled.add(fp)
        return bad

    def _served_before(self) -> View | None:
        """What the daemons serve now: the applied document with its held-back names (made
        once per applied document: its token is what the next delta's view names as base)."""
        st = self.st
        if not st.desired:
            return None
        if self._served is not None and self._served[0] is st.desired:
            return self._served[1]
        failures = [NameFailure.from_dict(f) for f in st.failed_names or []]
        view = served_view(_view(st.desired), failures)
        self._served = (st.desired, view)
        return view
