"""Who is calling: the identity a verified token carries, and why a token may not yield one."""

from __future__ import annotations

from dataclasses import dataclass, field

# Roles that make a principal kind of their own; any other role name is carried but unused
# by the shipped policies. `manager` is Keystone's project manager (it implies member).
_PROJECT_ROLES = ("manager", "member", "reader")
_DOMAIN_ROLES = ("admin", "manager", "member", "reader", "service")


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired, revoked or not for us.

    The message is logged, never shown to the client."""


class IdentityUnavailable(Exception):
    """The identity service could not say whether a token is valid (down, slow, failing,
    or refusing allot's own credentials): the caller is told to retry, not that it is wrong."""


@dataclass(frozen=True)
class Subject:
    user_id: str
    project_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)
    system: bool = False
    # Set for a Keystone domain-scoped token, which speaks for a domain, not a project.
    domain_id: str | None = None

    @property
    def principals(self) -> tuple[str, ...]:
        """The principal kinds the policy knows this caller as (see model.conf)."""
        if self.domain_id is not None:
            # No shipped profile grants these anything: a domain-scoped token is refused
            # unless a policy file says otherwise (`p, domain_reader, traits:read, any`).
            return tuple(f"domain_{role}" for role in _DOMAIN_ROLES if role in self.roles)
        kinds: list[str] = []
        if "admin" in self.roles:
            kinds.append("system_admin" if self.system else "admin")
        if "service" in self.roles:
            kinds.append("service")
        if self.system:
            if "reader" in self.roles or "member" in self.roles:
                kinds.append("system_reader")
        elif self.project_id:
            kinds.extend(role for role in _PROJECT_ROLES if role in self.roles)
        return tuple(kinds)
