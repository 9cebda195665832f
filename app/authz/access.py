"""Access: a caller's rights as the policy decides them, the value services receive.

Routers obtain it through one dependency per action (app.authz.dependencies); services use
it for per-object checks (`require`) and list ownership (`where`).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import ColumnElement, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from app.authz.policy import Policy, Scope
from app.authz.subjects import Subject
from app.errors import forbidden

log = logging.getLogger("allot.authz")


class Access:
    """A caller's rights, as the policy decides them; handed to services for object checks."""

    def __init__(self, subject: Subject, policy: Policy) -> None:
        self.subject = subject
        self.policy = policy

    @property
    def project_id(self) -> str | None:
        return self.subject.project_id

    def scope(self, action: str) -> str:
        return self.policy.scope(self.subject, action)

    def allows(self, action: str, owner: str | None) -> bool:
        return self.policy.allows(self.subject, action, owner)

    def require(self, action: str, owner: str | None, object_id: str = "") -> None:
        """403 unless the policy allows `action` on an object owned by `owner`."""
        allowed, rule = self.policy.decide(self.subject, action, owner)
        if not allowed:
            log.info(
                "denied",
                extra={
                    "action": action,
                    "object": object_id,
                    "rule": rule,
                    "owner": owner,
                },
            )
            raise forbidden(f"{action} on {object_id or 'object'}: {rule}")

    def where(self, action: str, owner_column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
        """A filter that keeps only the rows this caller may `action` (list ownership)."""
        scope = self.scope(action)
        if scope == Scope.ANY:
            return true()
        project = self.subject.project_id
        if scope == Scope.VISIBLE:
            if project:
                return or_(owner_column.is_(None), owner_column == project)
            return owner_column.is_(None)
        if scope == Scope.OWNED and project:
            return owner_column == project
        return false()
