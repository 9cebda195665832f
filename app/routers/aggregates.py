"""/resource_providers/{uuid}/aggregates (1.1+): the aggregates a provider is a member of."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from app.authz.dependencies import ProvidersRead, ProvidersWrite
from app.dependencies import DatabaseDep, SessionDep, Version, since
from app.errors import bad_request
from app.httpcache import set_last_modified
from app.microversion import Microversion
from app.openapi import json_body_doc
from app.routers.resource_providers import provider_body
from app.schemas.aggregates import AggregatesUpdate, AggregatesUpdate10, ProviderAggregates
from app.services import aggregates as service

router = APIRouter(
    prefix="/resource_providers/{uuid}/aggregates", tags=["aggregates"], dependencies=[since(1)]
)

GENERATION_SINCE = 19

ProviderUuid = Annotated[str, Path(max_length=255, description="The provider's UUID")]


def _shape(version: Microversion, generation: int, aggregates: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"aggregates": aggregates}
    if version.at_least(GENERATION_SINCE):
        out["resource_provider_generation"] = generation
    return out


@router.get("", response_model=ProviderAggregates, response_model_exclude_unset=True)
async def list_aggregates(
    response: Response, uuid: ProviderUuid, version: Version, session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:  # fmt: skip
    generation, aggregates = await service.read(session, access, uuid)
    # Memberships carry no timestamps: Placement dates them "now".
    set_last_modified(response, version, None)
    return _shape(version, generation, aggregates)


@router.put(
    "",
    response_model=ProviderAggregates,
    response_model_exclude_unset=True,
    openapi_extra=json_body_doc(AggregatesUpdate),
)
async def update_aggregates(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    database: DatabaseDep,
    session: SessionDep,
    access: ProvidersWrite,
) -> dict[str, Any]:
    generation: int | None = None
    if version.at_least(GENERATION_SINCE):
        body = await provider_body(request, AggregatesUpdate, session, access, uuid)
        wanted, generation = body.aggregates, body.resource_provider_generation
    else:
        wanted = (await provider_body(request, AggregatesUpdate10, session, access, uuid)).root
    if len(set(wanted)) != len(wanted):
        raise bad_request("aggregates are not unique")
    new_generation, aggregates = await database.write(
        lambda s: service.replace(s, access, uuid, wanted, generation)
    )
    set_last_modified(response, version, None)
    return _shape(version, new_generation, aggregates)
