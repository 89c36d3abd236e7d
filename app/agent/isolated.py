"""Running the apply pipeline so that one name's failure stays that name's (app.agent.isolation).

Three kinds of failure are found and pinned on names, each before the whole change would
otherwise be rolled back:

1. before anything is staged, each bundle not served yet is checked on its own
   (``app.agent.tlscheck``): the names bound to an unusable one are held back;
2. when a daemon's own check refuses the staged configuration (``nginx -t`` cannot build its
   ``map`` hash for a 250-character name, for example), the names that changed are bisected
   with validation-only runs (nothing live is touched) until the ones the daemon refuses are
   found; if the configuration is refused even without any changed name, it is not a name's
   fault and the change fails as a whole;
3. when verification after the reload fails only for names whose certificate changed, the
   pipeline has already rolled back; those names are held back and the change runs again.

The pipeline runs at most three times; anything else (the server-wide certificate, a daemon
that does not reload or start, a failure no name explains) fails the whole change as before.
"""

from __future__ import annotations

import asyncio
import time

from app.agent.apply import ApplyFailed, Pipeline
from app.agent.backends.base import StepError, View
from app.agent.bundles import BundleStore
from app.agent.isolation import (
    SERVICES,
    NameFailure,
    held_back,
    names,
    served_view,
    to_check,
    verify_culprits,
)
from app.agent.tlscheck import check_identity

MAX_RUNS = 3
# A daemon's refusal is reported in the name's failure; its first lines say enough.
_MESSAGE_LIMIT = 600


def _changed(served: View, previous: View | None) -> list[tuple[str, str]]:
    """(service, name) whose served entry differs from before, in a stable order."""
    out = []
    for service in SERVICES:
        before = names(previous, service) if previous else {}
        out += [
            (service, n) for n, fp in sorted(names(served, service).items()) if before.get(n) != fp
        ]
    return out


class IsolatedApply:
    def __init__(self, pipeline: Pipeline, store: BundleStore) -> None:
        self.pipeline = pipeline
        self.store = store

    async def check_bundles(
        self, desired: View, previous: View | None, bad: dict[str, tuple[str, str]]
    ) -> None:
        """Add to ``bad`` each bundle the daemons do not serve yet that OpenSSL cannot serve."""
        for fp in sorted(to_check(desired, previous) - bad.keys()):
            if not self.store.has(fp):
                continue
            unusable = await asyncio.to_thread(check_identity, self.store.path(fp))
            if unusable is not None:
                bad[fp] = (unusable.code, unusable.message)

    async def apply(
        self,
        desired: View,
        previous: View | None,
        bad: dict[str, tuple[str, str]],
        carried: list[NameFailure],
    ) -> tuple[dict, list[NameFailure], View]:
        """(pipeline outcome, held-back names, served view); ApplyFailed for a whole failure.

        The outcome's ``timings`` gain ``check`` (the per-bundle checks) and, when a run failed
        and names were found, ``isolate`` (the failed runs and the search for the names)."""
        started = time.monotonic()
        await self.check_bundles(desired, previous, bad)
        checked = time.monotonic()
        for role, fp in (
            ("server_certificate", desired.server_certificate),
            ("webmail_default", desired.webmail_default),
        ):
            if fp in bad:
                code, message = bad[fp]
                raise ApplyFailed(
                    {
                        "status": "failed",
                        "step": "check",
                        "daemon": "agent",
                        "message": f"{role} {fp}: {code}: {message}",
                        "rolled_back": True,
                    }
                )
        failures = held_back(desired, previous, bad, carried)
        for run in range(MAX_RUNS):
            served = served_view(desired, failures)
            attempt = time.monotonic()
            try:
                outcome = await self.pipeline.apply(served, previous)
            except ApplyFailed as failed:
                more = None
                if run + 1 < MAX_RUNS:
                    more = await self._culprits(failed.result, desired, served, previous)
                if not more:
                    raise
                failures = failures + more
                continue
            timings = outcome.setdefault("timings", {})
            timings["check"] = round(checked - started, 3)
            if run:
                timings["isolate"] = round(attempt - checked, 3)
            return outcome, failures, served
        raise AssertionError("unreachable")  # the last run returns or raises

    async def _culprits(
        self, result: dict, desired: View, served: View, previous: View | None
    ) -> list[NameFailure] | None:
        before = {s: names(previous, s) if previous else {} for s in SERVICES}

        def failure(service: str, name: str, code: str, message: str) -> NameFailure:
            fp = names(desired, service)[name]
            return NameFailure(name, service, fp, code, message, before[service].get(name))

        if result.get("step") == "verify" and result.get("rolled_back"):
            found = verify_culprits(result.get("probes") or [], served, previous)
            if found:
                return [failure(s, n, "verify_failed", e) for (s, n), e in sorted(found.items())]
            return None
        if result.get("step") == "validate":
            found = await self._refused_names(served, previous)
            if found:
                return [failure(s, n, "config_refused", e) for (s, n), e in sorted(found.items())]
        return None

    async def _refused_names(
        self, served: View, previous: View | None
    ) -> dict[tuple[str, str], str] | None:
        """The changed names the daemons' checks refuse (bisection), or None when the
        configuration is refused without them too, or no single name explains it."""
        changed = _changed(served, previous)
        if not changed:
            return None

        def view_with(keep: list[tuple[str, str]]) -> View:
            """``served`` with every changed name not in ``keep`` put back as before."""
            kept = set(keep)
            back = [
                NameFailure(n, s, "", "", "", names(previous, s).get(n) if previous else None)
                for s, n in changed
                if (s, n) not in kept
            ]
            return served_view(served, back)

        if await self.pipeline.validate_only(view_with([])) is not None:
            return None  # refused without any changed name: not a name's fault
        found: dict[tuple[str, str], str] = {}

        async def search(group: list[tuple[str, str]]) -> bool:
            error = await self.pipeline.validate_only(view_with(group))
            if error is None:
                return False
            if len(group) == 1:
                found[group[0]] = _message(error)
                return True
            middle = len(group) // 2
            left = await search(group[:middle])
            right = await search(group[middle:])
            return left or right

        await search(changed)
        if not found:
            return None  # refused only in combination: not one name's fault
        rest = [c for c in changed if c not in found]
        if await self.pipeline.validate_only(view_with(rest)) is not None:
            return None  # the others still fail together: give up, whole failure
        return found


def _message(error: StepError) -> str:
    """The daemon's first line: the reason (``[emerg] could not build map_hash …``), without the
    paths of the check copy that follow; the domain's owner sees this text."""
    first = next((line for line in error.message.splitlines() if line.strip()), "refused")
    text = f"{error.daemon}: {first.strip()}"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."
