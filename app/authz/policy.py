"""The Casbin enforcer: the one place that decides allow or deny."""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path

import casbin

from app.authz.subjects import Subject
from app.settings import ConfigurationError

log = logging.getLogger("allot.authz")

PROFILES = ("tenant", "placement")
# An owner no real project can have: used to ask "may this caller act on someone else's object?"
_FOREIGN = "\x00foreign"


def _package_file(*parts: str) -> str:
    return str(resources.files("app.authz").joinpath(*parts))


def policy_path(policy: str) -> str:
    """A shipped profile name or a path to a policy CSV file."""
    if policy in PROFILES:
        return _package_file("policies", f"{policy}.csv")
    path = Path(policy)
    if not path.is_file():
        raise ConfigurationError(
            f"ALLOT_POLICY must be one of {', '.join(PROFILES)} or a readable policy file"
        )
    return str(path)


class Scope:
    NONE = "none"
    OWNED = "owned"
    VISIBLE = "visible"
    ANY = "any"


class Policy:
    def __init__(self, policy: str) -> None:
        self.source = policy
        self._load()

    def _load(self) -> None:
        self.enforcer = casbin.Enforcer(_package_file("model.conf"), policy_path(self.source))
        self._scope.cache_clear()
        self._decide_relation.cache_clear()

    def reload(self) -> None:
        self._load()
        log.info("policy reloaded", extra={"policy": self.source})

    def decide(self, subject: Subject, action: str, owner: str | None) -> tuple[bool, str]:
        """Allowed or not, and the rule that decided (for the log)."""
        project = _project_of(subject)
        return self._decide_relation(
            subject.principals, bool(project), _relation(project, owner), action
        )

    def allows(self, subject: Subject, action: str, owner: str | None) -> bool:
        return self.decide(subject, action, owner)[0]

    def scope(self, subject: Subject, action: str) -> str:
        """How far an action reaches for this caller, derived from the policy itself."""
        return self._scope(subject.principals, _project_of(subject), action)

    def _decide(
        self, principals: tuple[str, ...], project: str, owner: str, action: str
    ) -> tuple[bool, str]:
        for principal in principals:
            allowed, rule = self.enforcer.enforce_ex(principal, project, owner, action)
            if allowed:
                return True, ", ".join(rule)
        return False, f"no rule allows {action} for {list(principals) or 'no role'}"

    @lru_cache(maxsize=4096)  # noqa: B019 - one Policy lives as long as the process
    def _decide_relation(
        self, principals: tuple[str, ...], has_project: bool, relation: str, action: str
    ) -> tuple[bool, str]:
        # model.conf compares the owner only with "" and with the caller's project, so the
        # decision depends on how the two relate, not on the names: a bounded cache key.
        project = _SOME_PROJECT if has_project else ""
        owner = {_SHARED: "", _OWN: project, _OTHER: _FOREIGN}[relation]
        return self._decide(principals, project, owner, action)

    @lru_cache(maxsize=4096)  # noqa: B019 - one Policy lives as long as the process
    def _scope(self, principals: tuple[str, ...], project: str, action: str) -> str:
        def allowed(owner: str) -> bool:
            return self._decide(principals, project, owner, action)[0]

        if allowed(_FOREIGN):
            return Scope.ANY
        shared = allowed("")
        own = bool(project) and allowed(project)
        if shared and own:
            return Scope.VISIBLE
        if own:
            return Scope.OWNED
        if shared:
            # Shared objects only: expressed as "visible" with no project of one's own.
            return Scope.VISIBLE
        return Scope.NONE


_SOME_PROJECT = "\x00project"
_SHARED, _OWN, _OTHER = "shared", "own", "other"


def _relation(project: str, owner: str | None) -> str:
    """How an object's owner relates to the caller's project."""
    if not owner:
        return _SHARED
    return _OWN if owner == project else _OTHER


def _project_of(subject: Subject) -> str:
    return "" if subject.system else (subject.project_id or "")
