"""Challenge solvers: make the CA's check succeed, then undo it (RFC 8555 §8).

A solver gets every pending challenge of one order at once. That matters for dns-01: a wildcard
and its base name (``*.example.com`` + ``example.com``) share ``_acme-challenge.example.com``, so
both TXT values must be in place before either challenge is answered, or the CA may see only one.

``cleanup`` removes exactly the values derived from the tasks, and removing something that is not
there is harmless, so the order code can call it in a ``finally`` whether ``prepare`` finished,
failed halfway or never ran. The one thing a dns-01 solver remembers is where each validation
name led (its CNAME route), so cleanup deletes where prepare wrote; one solver serves one order.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acme import challenges, messages

from app.acme.dns.base import DnsError, DnsPropagationTimeout, DnsProvider
from app.acme.dns.delegation import Route, route
from app.acme.errors import DnsUpdateError, HttpPublishError, PropagationError

log = logging.getLogger("certpost.acme")


@dataclass(frozen=True)
class ChallengeTask:
    """One challenge to satisfy for one authorization (RFC 8555 §7.1.4, §8.1).

    ``identifier`` is the authorization's DNS name, without ``*.`` (§7.1.4: a wildcard
    authorization names the base domain and sets ``wildcard``).
    """

    identifier: str
    wildcard: bool
    challenge: messages.ChallengeBody
    key_authorization: str
    """token || '.' || base64url(JWK thumbprint), RFC 8555 §8.1."""
    validation: str
    """What the CA will look for: the TXT value (dns-01) or the key authorization (http-01)."""

    @property
    def token(self) -> str:
        return self.challenge.chall.encode("token")

    @property
    def validation_name(self) -> str:
        """`_acme-challenge.<identifier>` for dns-01 (§8.4)."""
        return f"_acme-challenge.{self.identifier}"


class ChallengeSolver(abc.ABC):
    """Publishes and withdraws the responses for one challenge type."""

    challenge_type: str = ""

    @abc.abstractmethod
    def prepare(self, tasks: Sequence[ChallengeTask]) -> None:
        """Make every task's validation visible to the CA; raise an AcmeError subclass if not."""

    @abc.abstractmethod
    def cleanup(self, tasks: Sequence[ChallengeTask]) -> None:
        """Withdraw every task's validation; never raise (log instead)."""

    def validation_for(self, challb: messages.ChallengeBody, account_key) -> tuple[str, str]:
        """(key authorization, validation) for a challenge of this solver's type."""
        chall = challb.chall
        key_authz = chall.key_authorization(account_key)
        return key_authz, chall.validation(account_key)


class Dns01Solver(ChallengeSolver):
    """dns-01 through a DnsProvider: add all TXT values, wait until served, then answer (§8.4).

    `others` are further providers the order's account may use: a validation name delegated by
    CNAME into a zone one of them declares is written with that one (app/acme/dns/delegation.py).
    `default_follows` false (the platform's provider on an account's order): `provider` writes a
    delegated target only inside its own declared zones or under `own_domains` (the order's).
    Routes found by `prepare` are kept for `cleanup`, which routes again only if it must.
    """

    challenge_type = challenges.DNS01.typ

    def __init__(
        self,
        provider: DnsProvider,
        *,
        others: Sequence[DnsProvider] = (),
        default_follows: bool = True,
        own_domains: Sequence[str] = (),
        propagation_timeout: float = 120.0,
        propagation_interval: float = 2.0,
    ) -> None:
        self.provider = provider
        self.others = tuple(others)
        self.default_follows = default_follows
        self.own_domains = tuple(own_domains)
        self.propagation_timeout = propagation_timeout
        self.propagation_interval = propagation_interval
        self._routes: dict[str, Route] = {}

    def _route(self, name: str) -> Route:
        if name not in self._routes:
            self._routes[name] = route(name, self.provider, self.others, default_follows=self.default_follows,
                                       own_domains=self.own_domains)
        return self._routes[name]

    def _by_target(self, tasks: Sequence[ChallengeTask]) -> list[tuple[Route, list[str]]]:
        by_name: dict[str, list[str]] = {}
        for task in tasks:
            by_name.setdefault(task.validation_name, []).append(task.validation)
        grouped: dict[tuple[int, str], tuple[Route, list[str]]] = {}
        for name, values in by_name.items():
            where = self._route(name)
            key = (id(where.provider), where.target)
            grouped.setdefault(key, (where, []))[1].extend(values)
        return list(grouped.values())

    def prepare(self, tasks: Sequence[ChallengeTask]) -> None:
        try:
            routes = self._by_target(tasks)
        except DnsError as exc:
            raise DnsUpdateError(f"cannot follow the CNAME of {exc.fqdn}: {exc.detail}", code=exc.code) from exc
        for where, values in routes:
            try:
                where.provider.add_txt_values(where.target, values)
            except DnsError as exc:
                raise DnsUpdateError(
                    f"cannot add the TXT record {where.target}: {exc.detail}", code=exc.code
                ) from exc
        for where, values in routes:
            try:
                where.provider.wait_for_propagation(
                    where.target,
                    values,
                    timeout=self.propagation_timeout,
                    interval=self.propagation_interval,
                )
            except DnsPropagationTimeout as exc:
                raise PropagationError(exc.detail, code=exc.code, timed_out=True) from exc
            except DnsError as exc:
                raise PropagationError(f"cannot check {where.target}: {exc.detail}", code=exc.code) from exc

    def cleanup(self, tasks: Sequence[ChallengeTask]) -> None:
        try:
            routes = self._by_target(tasks)
        except Exception as exc:  # noqa: BLE001 - no route, nothing was written
            log.warning("no TXT record to delete: %s", getattr(exc, "detail", exc))
            return
        for where, values in routes:
            try:
                where.provider.delete_txt_values(where.target, values)
            except Exception as exc:  # noqa: BLE001 - cleanup must not mask the real outcome
                log.warning(
                    "could not delete TXT %s (%s): %s",
                    where.target,
                    getattr(exc, "code", type(exc).__name__),
                    getattr(exc, "detail", exc),
                )


class Http01Solver(ChallengeSolver):
    """http-01 (§8.3): serve the key authorization at /.well-known/acme-challenge/<token>.

    `publish`/`unpublish` do the serving; the worker passes functions that go through the agent
    on the mail server that answers for the name.
    """

    challenge_type = challenges.HTTP01.typ

    def __init__(
        self,
        publish: Callable[[str, str], None],
        unpublish: Callable[[str], None],
    ) -> None:
        self.publish = publish
        self.unpublish = unpublish

    def prepare(self, tasks: Sequence[ChallengeTask]) -> None:
        for task in tasks:
            if task.wildcard:
                raise HttpPublishError(
                    f"*.{task.identifier}: wildcard names can only be validated with dns-01 "
                    "(RFC 8555 §7.1.3)",
                    code="http01_wildcard",
                )
            try:
                self.publish(task.token, task.key_authorization)
            except Exception as exc:
                raise HttpPublishError(
                    f"cannot publish the http-01 response for {task.identifier}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def cleanup(self, tasks: Sequence[ChallengeTask]) -> None:
        for task in tasks:
            try:
                self.unpublish(task.token)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not unpublish http-01 token for %s: %s", task.identifier, exc)
