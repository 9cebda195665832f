"""/resource_classes: list, create, show, update (rename before 1.7, ensure from 1.7), delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.authz.dependencies import ResourceClassesRead, ResourceClassesWrite
from app.dependencies import (
    CustomPathName,
    DatabaseDep,
    SessionDep,
    StaleSessionDep,
    Version,
    since,
)
from app.dependencies import PathName as ClassName
from app.httpcache import set_last_modified
from app.models import ResourceClass
from app.openapi import json_body_doc
from app.requests import href, json_body, location_url, validate
from app.schemas.resource_classes import (
    ResourceClassCreate,
    ResourceClassList,
    ResourceClassOut,
    ResourceClassRename,
)
from app.services import resource_classes as service

router = APIRouter(prefix="/resource_classes", tags=["resource classes"])

ENSURE_SINCE = 7


def _shape(request: Request, rc: ResourceClass) -> dict[str, Any]:
    return {
        "name": rc.name,
        "links": [{"rel": "self", "href": href(request, f"/resource_classes/{rc.name}")}],
    }


@router.get("", response_model=ResourceClassList, dependencies=[since(2)])
async def list_resource_classes(
    request: Request,
    response: Response,
    version: Version,
    session: StaleSessionDep,
    _: ResourceClassesRead,
) -> dict[str, Any]:
    classes = await service.list_all(session)
    set_last_modified(response, version, service.last_modified(classes))
    return {"resource_classes": [_shape(request, rc) for rc in classes]}


@router.post(
    "",
    status_code=201,
    response_class=Response,
    dependencies=[since(2)],
    openapi_extra=json_body_doc(ResourceClassCreate),
)
async def create_resource_class(
    request: Request, database: DatabaseDep, _: ResourceClassesWrite
) -> Response:
    body = validate(ResourceClassCreate, await json_body(request))
    await database.write(lambda s: service.create(s, body.name))
    location = location_url(request, f"/resource_classes/{body.name}")
    return Response(status_code=201, headers={"location": location})


@router.get("/{name}", response_model=ResourceClassOut, dependencies=[since(2)])
async def show_resource_class(
    request: Request,
    response: Response,
    name: ClassName,
    version: Version,
    session: SessionDep,
    _: ResourceClassesRead,
) -> dict[str, Any]:
    rc = await service.get(session, name)
    set_last_modified(response, version, rc.updated_at or rc.created_at)
    return _shape(request, rc)


@router.put(
    "/{name}",
    response_model=ResourceClassOut,
    dependencies=[since(2)],
    responses={
        201: {"description": "Created (1.7+)"},
        204: {"description": "Already exists (1.7+)"},
    },
    # No body in the document: it describes the latest microversion, which takes none (the
    # rename that read one ended at 1.7).
)
async def update_resource_class(
    request: Request,
    name: CustomPathName,
    version: Version,
    database: DatabaseDep,
    _: ResourceClassesWrite,
) -> Any:
    if version.at_least(ENSURE_SINCE):
        validate(ResourceClassCreate, {"name": name})
        created = await database.write(lambda s: service.ensure(s, name))
        # Created or already there, the answer says where the class is.
        return Response(
            status_code=201 if created else 204,
            headers={"location": location_url(request, f"/resource_classes/{name}")},
        )
    body = validate(ResourceClassRename, await json_body(request))
    rc = await database.write(lambda s: service.rename(s, name, body.name))
    return _shape(request, rc)


@router.delete("/{name}", status_code=204, response_class=Response, dependencies=[since(2)])
async def delete_resource_class(
    name: ClassName, database: DatabaseDep, _: ResourceClassesWrite
) -> Response:
    await database.write(lambda s: service.delete(s, name))
    return Response(status_code=204)
