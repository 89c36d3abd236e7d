"""Who is calling, and what they may see: authorisation rules as pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import false, or_, true

from app.problems import Forbidden, NotFound


@dataclass(frozen=True)
class Caller:
    token_id: str
    role: str  # "admin" | "customer"
    account_id: str | None
    # Who acts, as the event log names it: "token" (an API token; token_id is its id), "worker"
    # (token_id is the worker's id), "operator" (the `certpost` command on the controller's host) or
    # "enrolment" (an agent presenting a one-time enrolment token; token_id is that token's id).
    actor: str = "token"

    @classmethod
    def for_worker(cls, worker_id: str) -> Caller:
        """The worker acting on its own, with admin visibility (see ``SYSTEM``); events name it
        as their actor ``{type: worker, id: worker_id}``."""
        return cls(token_id=worker_id, role="admin", account_id=None, actor="worker")

    @classmethod
    def for_enrolment(cls, enrolment_token_id: str) -> Caller:
        """An agent spending an enrolment token: the token stands for the administrator who made
        it, for that one server; events name it as ``{type: enrolment, id: enrolment_token_id}``."""
        return cls(token_id=enrolment_token_id, role="admin", account_id=None, actor="enrolment")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this route needs an admin token")

    def can_see(self, account_id: str | None) -> bool:
        """Admins see everything; a customer sees its own account's rows only."""
        return self.is_admin or (account_id is not None and account_id == self.account_id)

    def visible(self, row, what: str):
        """``row`` when it exists and this caller may see it; else 404, the same either way,
        so a customer probing another account's ids learns nothing."""
        if row is None or not self.can_see(row.account_id):
            raise NotFound(f"{what} not found")
        return row

    def visible_rows(self, account_column: Any, *, requested: str | None = None, shared: bool = False) -> Any:
        """The one rule every list applies: the SQL condition on ``account_column`` (the rows'
        owning account) that keeps exactly the rows ``can_see`` allows, as ``visible`` does for one.

        ``requested`` is the list's ``account_id`` filter: an admin gets that account's rows; a
        customer gets its own rows that match it, so naming another account lists nothing (the
        same answer as an account with no rows: nothing is learnt). ``shared`` lists add the
        platform's rows (no account), which a customer may use but not change (DNS providers).
        """
        if self.is_admin:
            return true() if requested is None else account_column == requested
        if self.account_id is None or (requested is not None and requested != self.account_id):
            return false()
        own = account_column == self.account_id
        return or_(own, account_column.is_(None)) if shared and requested is None else own

    def owner_for_new(self, requested: str | None) -> str | None:
        """The account a new row belongs to: the customer's own, or what an admin asks for."""
        if self.is_admin:
            return requested
        if requested is not None and requested != self.account_id:
            raise Forbidden("a customer token can only act for its own account")
        return self.account_id


SYSTEM = Caller(token_id="system", role="admin", account_id=None, actor="worker")
"""The worker acting on its own (renewals, storing an order's result): checks already passed
when the order was accepted, so it acts with admin visibility. Where the worker's id is known,
``Caller.for_worker(id)`` names it in the event log instead."""

OPERATOR = Caller(token_id="cli", role="admin", account_id=None, actor="operator")
"""The `certpost` command run by an operator on the controller's host (tokens, migrations): it
holds the database, not a token."""
