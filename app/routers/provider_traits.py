"""/resource_providers/{uuid}/traits (1.6+): the traits a provider has."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from app.authz.dependencies import ProvidersRead, ProvidersWrite
from app.dependencies import DatabaseDep, SessionDep, Version, since
from app.httpcache import set_last_modified
from app.openapi import json_body_doc
from app.requests import json_body, validate
from app.schemas.provider_traits import ProviderTraits, ProviderTraitsUpdate
from app.services import provider_traits as service

router = APIRouter(
    prefix="/resource_providers/{uuid}/traits", tags=["provider traits"], dependencies=[since(6)]
)

ProviderUuid = Annotated[str, Path(max_length=255, description="The provider's UUID")]


@router.get("", response_model=ProviderTraits)
async def list_provider_traits(
    response: Response, uuid: ProviderUuid, version: Version, session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:  # fmt: skip
    generation, traits, modified = await service.read(session, access, uuid)
    set_last_modified(response, version, modified)
    return {"traits": traits, "resource_provider_generation": generation}


@router.put("", response_model=ProviderTraits, openapi_extra=json_body_doc(ProviderTraitsUpdate))
async def update_provider_traits(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    database: DatabaseDep,
    access: ProvidersWrite,
) -> dict[str, Any]:
    body = validate(ProviderTraitsUpdate, await json_body(request))
    generation, traits, modified = await database.write(
        lambda s: service.replace(s, access, uuid, body.traits, body.resource_provider_generation)
    )
    set_last_modified(response, version, modified)
    return {"traits": traits, "resource_provider_generation": generation}


@router.delete("", status_code=204, response_class=Response)
async def delete_provider_traits(
    uuid: ProviderUuid, database: DatabaseDep, access: ProvidersWrite
) -> Response:
    await database.write(lambda s: service.delete_all(s, access, uuid))
    return Response(status_code=204)
