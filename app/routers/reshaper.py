"""POST /reshaper (1.30+): move inventory and allocations across a provider tree atomically."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.authz.dependencies import Reshape
from app.dependencies import DatabaseDep, Version, since
from app.microversion import Microversion
from app.openapi import json_body_doc
from app.requests import json_body, validate
from app.routers.allocations import CONSUMER_TYPE_SINCE, MAPPINGS_SINCE, consumer_writes
from app.schemas.reshaper import ReshapeV130, ReshapeV134, ReshapeV138
from app.services import reshaper as service
from app.services.reshaper import InventoryChange

router = APIRouter(tags=["reshaper"])

RESHAPER_SINCE = 30


def _model(version: Microversion) -> type[BaseModel]:
    if version.at_least(CONSUMER_TYPE_SINCE):
        return ReshapeV138
    if version.at_least(MAPPINGS_SINCE):
        return ReshapeV134
    return ReshapeV130


@router.post(
    "/reshaper",
    status_code=204,
    response_class=Response,
    dependencies=[since(RESHAPER_SINCE)],
    openapi_extra=json_body_doc(ReshapeV138),
)
async def reshape(
    request: Request, version: Version, database: DatabaseDep, access: Reshape
) -> Response:
    """Replace the named providers' inventories and the named consumers' allocations together."""
    body = validate(_model(version), await json_body(request))
    changes = [
        InventoryChange(uuid, inventory.resource_provider_generation, inventory.inventories)
        for uuid, inventory in body.inventories.items()  # type: ignore[attr-defined]
    ]
    writes = consumer_writes(body.allocations.root, version, "/allocations")  # type: ignore[attr-defined]
    await database.write(lambda s: service.reshape(s, access, version, changes, writes))
    return Response(status_code=204)
