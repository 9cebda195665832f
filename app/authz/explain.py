"""`allot policy check`: which rule allows or denies a request, for operators debugging access."""

from __future__ import annotations

import asyncio

from app.authz import actions
from app.authz.authentication import Authentication
from app.authz.policy import Policy
from app.authz.subjects import IdentityUnavailable, InvalidToken, Subject
from app.settings import Settings

# (method, first path segment, has a sub-resource) -> action; coarse on purpose: it explains
# the route-level decision and, with --owner, the object-level one.
_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "resource_classes"): actions.RESOURCE_CLASSES_READ,
    ("POST", "resource_classes"): actions.RESOURCE_CLASSES_WRITE,
    ("PUT", "resource_classes"): actions.RESOURCE_CLASSES_WRITE,
    ("DELETE", "resource_classes"): actions.RESOURCE_CLASSES_WRITE,
    ("GET", "traits"): actions.TRAITS_READ,
    ("PUT", "traits"): actions.TRAITS_WRITE,
    ("DELETE", "traits"): actions.TRAITS_WRITE,
    ("GET", "resource_providers"): actions.PROVIDERS_READ,
    ("POST", "resource_providers"): actions.PROVIDERS_CREATE,
    ("PUT", "resource_providers"): actions.PROVIDERS_WRITE,
    ("POST", "resource_providers/"): actions.PROVIDERS_WRITE,
    ("DELETE", "resource_providers"): actions.PROVIDERS_WRITE,
    ("GET", "allocations"): actions.ALLOCATIONS_READ,
    ("PUT", "allocations"): actions.ALLOCATIONS_WRITE,
    ("POST", "allocations"): actions.ALLOCATIONS_WRITE,
    ("DELETE", "allocations"): actions.ALLOCATIONS_WRITE,
    ("GET", "usages"): actions.USAGES_READ,
    ("GET", "allocation_candidates"): actions.CANDIDATES_READ,
    ("POST", "reshaper"): actions.RESHAPER,
}


def action_for(method: str, path: str) -> str | None:
    parts = [p for p in path.split("?")[0].split("/") if p]
    if not parts:
        return None
    method = method.upper()
    if parts[0] == "resource_providers" and len(parts) >= 3 and parts[2] == "allocations":
        return actions.PROVIDER_ALLOCATIONS_READ if method == "GET" else None
    if parts[0] == "resource_providers" and len(parts) >= 2 and method == "POST":
        return _ROUTES.get((method, "resource_providers/"))
    return _ROUTES.get((method, parts[0]))


async def _subject(settings: Settings, token: str) -> Subject:
    authentication = Authentication(settings)
    try:
        return await authentication.subject(token)
    finally:
        await authentication.close()


def explain(
    settings: Settings, token: str, method: str, path: str, owner: str | None = None
) -> str:
    try:
        subject = asyncio.run(_subject(settings, token))
    except InvalidToken as exc:
        return f"DENY (401): the token is not valid: {exc}"
    except IdentityUnavailable as exc:
        return f"UNKNOWN (503): the identity service could not validate the token: {exc}"
    action = action_for(method, path)
    if action is None:
        return f"no policy action for {method.upper()} {path} (public, or no such route)"
    policy = Policy(settings.policy)
    scope = policy.scope(subject, action)
    lines = [
        f"subject: user={subject.user_id} project={subject.project_id} "
        f"roles={sorted(subject.roles)} system={subject.system}",
        f"principal kinds: {', '.join(subject.principals) or 'none'}",
        f"policy: {settings.policy}   action: {action}   scope for this caller: {scope}",
    ]
    allowed, rule = policy.decide(subject, action, owner)
    target = f"an object owned by {owner!r}" if owner else "a shared object (no owner)"
    lines.append(f"{'ALLOW' if allowed else 'DENY'} on {target}: {rule}")
    return "\n".join(lines)
