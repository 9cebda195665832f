"""Who is calling: the identity a verified token carries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Subject:
    user_id: str
    project_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)
    system: bool = False

    @property
    def principals(self) -> tuple[str, ...]:
        """The principal kinds the policy knows this caller as (see model.conf)."""
        kinds: list[str] = []
        if "admin" in self.roles:
            kinds.append("system_admin" if self.system else "admin")
        if "service" in self.roles:
            kinds.append("service")
        if self.system:
            if "reader" in self.roles or "member" in self.roles:
                kinds.append("system_reader")
        elif self.project_id:
            if "member" in self.roles:
                kinds.append("member")
            if "reader" in self.roles:
                kinds.append("reader")
        return tuple(kinds)
