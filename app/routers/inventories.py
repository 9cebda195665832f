"""/resource_providers/{uuid}/inventories[/{resource_class}]: a provider's inventory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from app.authz.dependencies import ProvidersRead, ProvidersWrite
from app.dependencies import DatabaseDep, PathName, SessionDep, Version
from app.errors import ApiError, not_found
from app.httpcache import set_last_modified
from app.openapi import json_body_doc
from app.requests import location_url
from app.routers.resource_providers import provider_body
from app.schemas.inventories import (
    InventoriesReplace,
    InventoryCreate,
    InventoryFields,
    InventoryList,
    InventoryUpdate,
    InventoryWithGeneration,
)
from app.services import inventories as service
from app.services.inventories import ProviderInventory

router = APIRouter(prefix="/resource_providers/{uuid}/inventories", tags=["inventories"])

DELETE_ALL_SINCE = 5

ProviderUuid = Annotated[str, Path(max_length=255, description="The provider's UUID")]


def _all(state: ProviderInventory) -> dict[str, Any]:
    return {
        "inventories": {name: service.shape(inv) for name, inv in state.inventories.items()},
        "resource_provider_generation": state.generation,
    }


def _one(state: ProviderInventory, name: str) -> dict[str, Any]:
    inventory = state.inventories.get(name)
    if inventory is None:
        raise not_found(f"no inventory of {name[:64]!r}")
    return {**service.shape(inventory), "resource_provider_generation": state.generation}


def _modified(state: ProviderInventory, name: str) -> Any:
    inventory = state.inventories[name]
    return inventory.updated_at or inventory.created_at


@router.get("", response_model=InventoryList)
async def list_inventories(
    response: Response, uuid: ProviderUuid, version: Version, session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:  # fmt: skip
    state = await service.read(session, access, uuid)
    set_last_modified(response, version, state.modified)
    return _all(state)


@router.put("", response_model=InventoryList, openapi_extra=json_body_doc(InventoriesReplace))
async def replace_inventories(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    database: DatabaseDep,
    session: SessionDep,
    access: ProvidersWrite,
) -> dict[str, Any]:
    body = await provider_body(request, InventoriesReplace, session, access, uuid)
    state = await database.write(
        lambda s: service.replace_all(
            s, access, version, uuid, body.resource_provider_generation, body.inventories
        )
    )
    set_last_modified(response, version, state.modified)
    return _all(state)


@router.delete("", status_code=204, response_class=Response, responses={405: {}})
async def delete_inventories(
    uuid: ProviderUuid, version: Version, database: DatabaseDep, access: ProvidersWrite
) -> Response:
    if not version.at_least(DELETE_ALL_SINCE):
        # Placement: the method does not exist before 1.5.
        raise ApiError(405, headers={"allow": "GET, POST, PUT"}, log_detail="needs 1.5")
    await database.write(lambda s: service.delete_all(s, access, uuid))
    return Response(status_code=204)


@router.post(
    "",
    status_code=201,
    response_model=InventoryWithGeneration,
    openapi_extra=json_body_doc(InventoryCreate),
)
async def create_inventory(
    request: Request,
    uuid: ProviderUuid,
    version: Version,
    database: DatabaseDep,
    session: SessionDep,
    access: ProvidersWrite,
) -> Response:
    body = await provider_body(request, InventoryCreate, session, access, uuid)
    name = body.resource_class
    fields = InventoryFields.model_validate(body.model_dump(include=set(service.FIELDS)))
    state = await database.write(
        lambda s: service.create_one(s, access, version, uuid, name, fields)
    )
    out = JSONResponse(
        _one(state, name),
        status_code=201,
        headers={
            "location": location_url(request, f"/resource_providers/{uuid}/inventories/{name}")
        },
    )
    set_last_modified(out, version, _modified(state, name))
    return out


@router.get("/{resource_class}", response_model=InventoryWithGeneration)
async def show_inventory(
    response: Response,
    uuid: ProviderUuid,
    resource_class: PathName,
    version: Version,
    session: SessionDep,
    access: ProvidersRead,
) -> dict[str, Any]:
    state = await service.read(session, access, uuid)
    out = _one(state, resource_class)
    set_last_modified(response, version, _modified(state, resource_class))
    return out


@router.put(
    "/{resource_class}",
    response_model=InventoryWithGeneration,
    openapi_extra=json_body_doc(InventoryUpdate),
)
async def update_inventory(
    request: Request,
    response: Response,
    uuid: ProviderUuid,
    resource_class: PathName,
    version: Version,
    database: DatabaseDep,
    session: SessionDep,
    access: ProvidersWrite,
) -> dict[str, Any]:
    body = await provider_body(request, InventoryUpdate, session, access, uuid)
    fields = InventoryFields.model_validate(body.model_dump(include=set(service.FIELDS)))
    state = await database.write(
        lambda s: service.update_one(
            s, access, version, uuid, resource_class, body.resource_provider_generation, fields
        )
    )
    set_last_modified(response, version, _modified(state, resource_class))
    return _one(state, resource_class)


@router.delete("/{resource_class}", status_code=204, response_class=Response)
async def delete_inventory(
    uuid: ProviderUuid,
    resource_class: PathName,
    database: DatabaseDep,
    access: ProvidersWrite,
) -> Response:
    await database.write(lambda s: service.delete_one(s, access, uuid, resource_class))
    return Response(status_code=204)
