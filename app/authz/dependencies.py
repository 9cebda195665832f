"""FastAPI dependencies: who is calling (CurrentSubject) and may they act (one alias per action)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.authz import actions
from app.authz.access import Access
from app.authz.authentication import Authentication
from app.authz.policy import Scope
from app.authz.subjects import IdentityUnavailable, InvalidToken, Subject
from app.errors import AUTH_REQUIRED, UNAVAILABLE, UNAVAILABLE_RETRY_AFTER, ApiError
from app.observability import service_subject_var, subject_var
from app.ratelimit import RateLimiter

_BEARER = "bearer "


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header and header[: len(_BEARER)].lower() == _BEARER:
        return header[len(_BEARER) :].strip() or None
    return request.headers.get("x-auth-token") or None


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current_subject(request: Request) -> Subject:
    state = request.app.state
    authentication: Authentication = state.authentication
    limiter: RateLimiter = state.rate_limiter

    async def admit() -> None:
        # An address already over its failed-auth limit gets no more calls to Keystone: a
        # stream of made-up tokens costs Keystone nothing beyond that limit.
        await limiter.refuse_if_anonymous_spent(_client_address(request))

    try:
        token = _token(request)
        if token is None:
            raise InvalidToken("no credentials")
        subject = await authentication.subject(token, admit)
        service_token = request.headers.get("x-service-token")
        if service_token:
            # A service acting for the user (Nova for an instance's owner): the service's
            # token must be valid too, and its identity is logged beside the user's.
            service = await authentication.subject(service_token, admit)
            service_subject_var.set(service.user_id)
    except InvalidToken as exc:
        await limiter.hit_anonymous(_client_address(request))
        raise ApiError(
            401,
            AUTH_REQUIRED,
            log_detail=str(exc),
            headers={"WWW-Authenticate": authentication.challenge},
        ) from None
    except IdentityUnavailable as exc:
        raise ApiError(
            503,
            UNAVAILABLE,
            log_detail=f"token not validated: {exc}",
            headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
        ) from None
    await limiter.hit_subject(subject.user_id)
    subject_var.set(subject.user_id)
    return subject


CurrentSubject = Annotated[Subject, Depends(current_subject)]


def authorize(action: str) -> Any:
    """A dependency that admits only callers the policy lets do `action` on something."""

    async def dependency(request: Request, subject: CurrentSubject) -> Access:
        access = Access(subject, request.app.state.policy)
        if access.scope(action) == Scope.NONE:
            access.require(action, None, request.url.path)  # logs the denial, raises 403
        return access

    return Depends(dependency)


ResourceClassesRead = Annotated[Access, authorize(actions.RESOURCE_CLASSES_READ)]
ResourceClassesWrite = Annotated[Access, authorize(actions.RESOURCE_CLASSES_WRITE)]
TraitsRead = Annotated[Access, authorize(actions.TRAITS_READ)]
TraitsWrite = Annotated[Access, authorize(actions.TRAITS_WRITE)]
ProvidersRead = Annotated[Access, authorize(actions.PROVIDERS_READ)]
ProvidersCreate = Annotated[Access, authorize(actions.PROVIDERS_CREATE)]
ProvidersWrite = Annotated[Access, authorize(actions.PROVIDERS_WRITE)]
ProviderAllocationsRead = Annotated[Access, authorize(actions.PROVIDER_ALLOCATIONS_READ)]
AllocationsRead = Annotated[Access, authorize(actions.ALLOCATIONS_READ)]
AllocationsWrite = Annotated[Access, authorize(actions.ALLOCATIONS_WRITE)]
UsagesRead = Annotated[Access, authorize(actions.USAGES_READ)]
CandidatesRead = Annotated[Access, authorize(actions.CANDIDATES_READ)]
Reshape = Annotated[Access, authorize(actions.RESHAPER)]
MetricsRead = Annotated[Access, authorize(actions.METRICS_READ)]
