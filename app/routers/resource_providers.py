"""/resource_providers: list (with filters), create, show, update, delete; a provider's usages."""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.access import Access
from app.authz.dependencies import ProvidersCreate, ProvidersRead, ProvidersWrite
from app.dependencies import DatabaseDep, SessionDep, StaleSessionDep, Version
from app.errors import QUERY_BAD_VALUE, UNDEFINED, ApiError, bad_request
from app.httpcache import set_last_modified
from app.microversion import Microversion
from app.openapi import json_body_doc
from app.query import AGGREGATES_MAX_LENGTH, RESOURCES_MAX_LENGTH, TRAITS_MAX_LENGTH
from app.query import Query as QueryString
from app.requests import href, json_body, location_url, validate
from app.schemas.common import link
from app.schemas.providers import (
    ProviderCreate,
    ProviderCreate10,
    ProviderList,
    ProviderOut,
    ProviderUpdate,
    ProviderUpdate10,
    ProviderUsages,
    canonical_uuid,
)
from app.services import providers as service
from app.services import request_groups
from app.services.provider_search import Filters, find
from app.services.providers import Provider

M = TypeVar("M", bound=BaseModel)

router = APIRouter(prefix="/resource_providers", tags=["resource providers"])

NESTED_SINCE = 14  # parent_provider_uuid, root_provider_uuid, in_tree
BODY_ON_CREATE_SINCE = 20  # POST answers 200 with the provider instead of 201
REPARENTING_SINCE = 37  # moving a child to another parent, or making it a root
# Links a provider carries, and the microversion each appeared at.
_LINKS = (("inventories", 0), ("usages", 0), ("aggregates", 1), ("traits", 6), ("allocations", 11))

# Query parameters of GET /resource_providers, and the microversion each appeared at.
_FILTERS = {"name": 0, "uuid": 0, "member_of": 3, "resources": 4, "in_tree": 14, "required": 18}

# Bounds of the list filters (app.query), so a long query is our 400, not the HTTP server's.
MAX_FILTER_REPEATS = 4
AggregatesValue = Annotated[str, StringConstraints(max_length=AGGREGATES_MAX_LENGTH)]
TraitsValue = Annotated[str, StringConstraints(max_length=TRAITS_MAX_LENGTH)]
MAX_RESOURCES_LENGTH = RESOURCES_MAX_LENGTH
ProviderUuid = Annotated[str, Path(max_length=255, description="The provider's UUID")]


def _allowed(version: Microversion) -> set[str]:
    return {key for key, since in _FILTERS.items() if version.at_least(since)}


def _repeatable(version: Microversion) -> set[str]:
    # The parsers decide what a repeat means: 400 for member_of before 1.24, the last
    # `required` wins before 1.39 (as in Placement).
    return {"member_of", "required"}


def _uuid_value(query: QueryString, key: str) -> str | None:
    value = query.get(key)
    if value is None:
        return None
    try:
        return canonical_uuid(value)
    except ValueError:
        raise bad_request(f"{key} is not a UUID", QUERY_BAD_VALUE) from None


def _filters(query: QueryString, version: Microversion) -> Filters:
    """The list filters; a value that does not parse is 400 placement.query.bad_value."""
    try:
        return _parse_filters(query, version)
    except ApiError as exc:
        if exc.status == 400 and exc.code == UNDEFINED:
            exc.code = QUERY_BAD_VALUE
        raise


def _parse_filters(query: QueryString, version: Microversion) -> Filters:
    resources = query.get("resources")
    return Filters(
        name=query.get("name") or None,
        uuid=_uuid_value(query, "uuid"),
        in_tree=_uuid_value(query, "in_tree"),
        aggregates=request_groups.parse_member_of_values(query.get_all("member_of"), version),
        traits=request_groups.parse_required_values(query.get_all("required"), version),
        resources=request_groups.parse_resources(resources) if resources is not None else {},
    )


async def provider_body(
    request: Request, model: type[M], session: AsyncSession, access: Access, uuid: str
) -> M:
    """The body of a write to an existing provider, checked the way Placement orders it:
    a provider that is missing (or not visible) is 404 even when the body is bad too."""
    try:
        return validate(model, await json_body(request))
    except ApiError as exc:
        if exc.status == 400:
            await service.get(session, access, uuid)
        raise


def shape(request: Request, version: Microversion, provider: Provider) -> dict[str, Any]:
    """A provider as Placement shows it at this microversion (plus its owner, when set)."""
    url = href(request, f"/resource_providers/{provider.uuid}")
    links = [link("self", url)]
    links += [link(rel, f"{url}/{rel}") for rel, since in _LINKS if version.at_least(since)]
    out: dict[str, Any] = {
        "uuid": provider.uuid,
        "name": provider.name,
        "generation": provider.generation,
        "links": links,
    }
    if version.at_least(NESTED_SINCE):
        out["parent_provider_uuid"] = provider.parent_provider_uuid
        out["root_provider_uuid"] = provider.root_provider_uuid
    if provider.owner_project_id is not None:
        out["owner_project_id"] = provider.owner_project_id
    return out


@router.get("", response_model=ProviderList, response_model_exclude_unset=True)
async def list_resource_providers(
    request: Request,
    response: Response,
    version: Version,
    session: StaleSessionDep,
    access: ProvidersRead,
    name: Annotated[str | None, Query(max_length=200)] = None,
    uuid: Annotated[str | None, Query(max_length=64)] = None,
    member_of: Annotated[
        list[AggregatesValue] | None,
        Query(max_length=MAX_FILTER_REPEATS, description="1.3+; repeatable 1.24+, `!` 1.32+"),
    ] = None,
    resources: Annotated[
        str | None,
        Query(max_length=MAX_RESOURCES_LENGTH, description="1.4+; `VCPU:2,MEMORY_MB:512`"),
    ] = None,
    in_tree: Annotated[str | None, Query(max_length=64, description="1.14+; a UUID")] = None,
    required: Annotated[
        list[TraitsValue] | None,
        Query(max_length=MAX_FILTER_REPEATS, description="1.18+; `!` 1.22+, `in:` 1.39+"),
    ] = None,
) -> dict[str, Any]:
    query = QueryString(request, _allowed(version), repeatable=_repeatable(version))
    filters = _filters(query, version)
    found = await find(session, access, filters)
    set_last_modified(response, version, service.last_modified(found))
    return {"resource_providers": [shape(request, version, p) for p in found]}


@router.post(
    "",
    status_code=201,
    response_model=ProviderOut,
    response_model_exclude_unset=True,
    responses={200: {"model": ProviderOut, "description": "Created (1.20+)"}},
    openapi_extra=json_body_doc(ProviderCreate),
)
async def create_resource_provider(
    request: Request, version: Version, database: DatabaseDep, access: ProvidersCreate
) -> Response:
    document = await json_body(request)
    body: ProviderCreate10
    if version.at_least(NESTED_SINCE):
        body = validate(ProviderCreate, document)
    else:
        body = validate(ProviderCreate10, document)
    parent = getattr(body, "parent_provider_uuid", None)
    owner = service.owner_for(
        access, body.owner_project_id, "owner_project_id" in body.model_fields_set
    )
    uuid = body.uuid or str(uuidlib.uuid4())
    provider = await database.write(
        lambda s: service.create(
            s, access, name=body.name, uuid=uuid, parent_uuid=parent, owner=owner
        )
    )
    location = location_url(request, f"/resource_providers/{provider.uuid}")
    if not version.at_least(BODY_ON_CREATE_SINCE):
        return Response(status_code=201, headers={"location": location})
    out = JSONResponse(shape(request, version, provider), headers={"location": location})
    set_last_modified(out, version, provider.modified)
    return out


@router.get("/{uuid}", response_model=ProviderOut, response_model_exclude_unset=True)
async def show_resource_provider(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:
    provider = await service.get(session, access, uuid)
    set_last_modified(response, version, provider.modified)
    return shape(request, version, provider)


@router.put(
    "/{uuid}",
    response_model=ProviderOut,
    response_model_exclude_unset=True,
    openapi_extra=json_body_doc(ProviderUpdate),
)
async def update_resource_provider(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    database: DatabaseDep,
    session: SessionDep,
    access: ProvidersWrite,
) -> dict[str, Any]:
    model = ProviderUpdate if version.at_least(NESTED_SINCE) else ProviderUpdate10
    body = await provider_body(request, model, session, access, uuid)
    given = body.model_fields_set
    parent = ("parent_provider_uuid" in given, getattr(body, "parent_provider_uuid", None))
    owner = ("owner_project_id" in given, body.owner_project_id)
    provider = await database.write(
        lambda s: service.update_provider(
            s,
            access,
            uuid,
            name=body.name,
            parent=parent,
            owner=owner,
            allow_reparenting=version.at_least(REPARENTING_SINCE),
        )
    )
    set_last_modified(response, version, provider.modified)
    return shape(request, version, provider)


@router.delete("/{uuid}", status_code=204, response_class=Response)
async def delete_resource_provider(
    uuid: ProviderUuid, database: DatabaseDep, access: ProvidersWrite
) -> Response:
    await database.write(lambda s: service.delete(s, access, uuid))
    return Response(status_code=204)


@router.get("/{uuid}/usages", response_model=ProviderUsages)
async def show_provider_usages(
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:
    generation, usages = await service.usages(session, access, uuid)
    # Usages change with every allocation: Placement dates them "now".
    set_last_modified(response, version, None)
    return {"resource_provider_generation": generation, "usages": usages}
