"""/allocations/{consumer_uuid}, POST /allocations (1.13+), /resource_providers/{uuid}/allocations.

Reads answer another tenant's consumer exactly as an unknown one ({"allocations": {}});
writes go through `services.allocations.write`, one transaction that applies completely
or leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from app.authz import actions
from app.authz.dependencies import AllocationsRead, AllocationsWrite, ProviderAllocationsRead
from app.dependencies import DatabaseDep, SessionDep, Version, since
from app.errors import bad_request, not_found
from app.httpcache import set_last_modified
from app.microversion import Microversion
from app.openapi import json_body_doc
from app.requests import json_body, validate
from app.schemas import allocations as schemas
from app.schemas.allocations import (
    INCOMPLETE_CONSUMER_ID,
    AllocationsPostV138,
    AllocationsPutV138,
    ConsumerAllocationsOut,
    ConsumerEntry,
    ProviderAllocationsOut,
    canonical_uuid,
)
from app.services import allocation_reads, providers
from app.services import allocations as service
from app.services.allocation_consumers import ConsumerWrite
from app.services.allocation_reads import Held
from app.services.consumers import UNKNOWN_TYPE
from app.timeutil import latest

router = APIRouter(tags=["allocations"])

PROJECT_USER_SINCE = 8  # PUT requires project_id and user_id
DICT_FORMAT_SINCE = 12  # allocations keyed by provider; GET shows project and user
POST_SINCE = 13
GENERATION_SINCE = 28  # consumer generations
MAPPINGS_SINCE = 34
CONSUMER_TYPE_SINCE = 38

ConsumerUuid = Annotated[str, Path(max_length=255, description="The consumer's UUID")]
ProviderUuid = Annotated[str, Path(max_length=255, description="The provider's UUID")]


def _as_uuid(value: str) -> str | None:
    try:
        return canonical_uuid(value)
    except ValueError:
        return None


def _put_model(version: Microversion) -> type[BaseModel]:
    if version.at_least(CONSUMER_TYPE_SINCE):
        return schemas.AllocationsPutV138
    if version.at_least(MAPPINGS_SINCE):
        return schemas.AllocationsPutV134
    if version.at_least(GENERATION_SINCE):
        return schemas.AllocationsPutV128
    if version.at_least(DICT_FORMAT_SINCE):
        return schemas.AllocationsPutV112
    if version.at_least(PROJECT_USER_SINCE):
        return schemas.AllocationsPutV18
    return schemas.AllocationsPutV10


def _post_model(version: Microversion) -> type[BaseModel]:
    if version.at_least(CONSUMER_TYPE_SINCE):
        return schemas.AllocationsPostV138
    if version.at_least(MAPPINGS_SINCE):
        return schemas.AllocationsPostV134
    if version.at_least(GENERATION_SINCE):
        return schemas.AllocationsPostV128
    return schemas.AllocationsPostV113


def consumer_write(uuid: str, body: Any, version: Microversion, pointer: str) -> ConsumerWrite:
    """One consumer's payload, whatever its microversion, as the service takes it."""
    return ConsumerWrite(
        uuid=uuid,
        project_id=getattr(body, "project_id", INCOMPLETE_CONSUMER_ID),
        user_id=getattr(body, "user_id", INCOMPLETE_CONSUMER_ID),
        allocations=body.by_provider(),
        generation=getattr(body, "consumer_generation", None),
        check_generation=version.at_least(GENERATION_SINCE),
        consumer_type=getattr(body, "consumer_type", None),
        pointer=pointer,
    )


def consumer_writes(
    entries: dict[str, ConsumerEntry], version: Microversion, pointer: str = ""
) -> Sequence[ConsumerWrite]:
    """Consumers keyed by UUID (POST, reshaper); `pointer`: where they sit in the body."""
    return [
        consumer_write(uuid, entry, version, f"{pointer}/{uuid}/allocations")
        for uuid, entry in entries.items()
    ]


def _for_consumer(allocations: list[Held], consumer: Any, version: Microversion) -> dict[str, Any]:
    by_provider: dict[str, Any] = {}
    for held in allocations:
        entry = by_provider.setdefault(
            held.provider_uuid, {"generation": held.provider_generation, "resources": {}}
        )
        entry["resources"][held.resource_class] = held.used
    shaped: dict[str, Any] = {"allocations": by_provider}
    if consumer is None or not allocations or not version.at_least(DICT_FORMAT_SINCE):
        return shaped
    shaped["project_id"] = consumer.project_id
    shaped["user_id"] = consumer.user_id
    if version.at_least(GENERATION_SINCE):
        shaped["consumer_generation"] = consumer.generation
    if version.at_least(CONSUMER_TYPE_SINCE):
        shaped["consumer_type"] = consumer.consumer_type or UNKNOWN_TYPE
    return shaped


@router.get(
    "/allocations/{consumer_uuid}",
    response_model=ConsumerAllocationsOut,
    response_model_exclude_unset=True,
)
async def show_allocations(
    response: Response,
    consumer_uuid: ConsumerUuid,
    version: Version,
    session: SessionDep,
    access: AllocationsRead,
) -> dict[str, Any]:
    """A consumer's allocations; an unknown (or another tenant's) consumer has none."""
    uuid = _as_uuid(consumer_uuid)
    consumer, allocations = (
        await allocation_reads.for_consumer(session, access, uuid) if uuid else (None, [])
    )
    set_last_modified(response, version, latest(among=(a.created_at for a in allocations)))
    return _for_consumer(allocations, consumer, version)


@router.put(
    "/allocations/{consumer_uuid}",
    status_code=204,
    response_class=Response,
    openapi_extra=json_body_doc(AllocationsPutV138),
)
async def replace_allocations(
    request: Request,
    consumer_uuid: ConsumerUuid,
    version: Version,
    database: DatabaseDep,
    access: AllocationsWrite,
) -> Response:
    """Replace all of a consumer's allocations (create the consumer if it is new)."""
    uuid = _as_uuid(consumer_uuid)
    if uuid is None:
        raise bad_request(f"malformed consumer uuid {consumer_uuid[:64]!r}")
    body = validate(_put_model(version), await json_body(request))
    write = consumer_write(uuid, body, version, "/allocations")
    await database.write(lambda s: service.write(s, access, [write]))
    return Response(status_code=204)


@router.delete("/allocations/{consumer_uuid}", status_code=204, response_class=Response)
async def delete_allocations(
    consumer_uuid: ConsumerUuid, database: DatabaseDep, access: AllocationsWrite
) -> Response:
    """Release everything the consumer holds; 404 when it holds nothing."""
    uuid = _as_uuid(consumer_uuid)
    if uuid is None:
        raise not_found(f"no allocations for consumer {consumer_uuid[:64]!r}")
    await database.write(lambda s: service.delete_consumer(s, access, uuid))
    return Response(status_code=204)


@router.post(
    "/allocations",
    status_code=204,
    response_class=Response,
    dependencies=[since(POST_SINCE)],
    openapi_extra=json_body_doc(AllocationsPostV138),
)
async def manage_allocations(
    request: Request, version: Version, database: DatabaseDep, access: AllocationsWrite
) -> Response:
    """Replace the allocations of several consumers at once: all of them or none.

    A consumer whose `allocations` is empty releases everything it holds.
    """
    body = validate(_post_model(version), await json_body(request))
    writes = consumer_writes(body.root, version)  # type: ignore[attr-defined]
    await database.write(lambda s: service.write(s, access, writes))
    return Response(status_code=204)


@router.get(
    "/resource_providers/{uuid}/allocations",
    response_model=ProviderAllocationsOut,
    response_model_exclude_unset=True,
    tags=["resource providers"],
)
async def list_provider_allocations(
    response: Response,
    uuid: ProviderUuid,
    version: Version,
    session: SessionDep,
    access: ProviderAllocationsRead,
) -> dict[str, Any]:
    """Every consumer's allocations on one provider."""
    provider = await providers.get(session, access, _as_uuid(uuid) or uuid)
    access.require(actions.PROVIDER_ALLOCATIONS_READ, provider.owner, provider.uuid)
    allocations = await allocation_reads.for_provider(session, provider.id)
    by_consumer: dict[str, Any] = {}
    for held in allocations:
        entry = by_consumer.setdefault(held.consumer_uuid, {"resources": {}})
        entry["resources"][held.resource_class] = held.used
        if version.at_least(GENERATION_SINCE):
            entry["consumer_generation"] = held.consumer_generation
    set_last_modified(response, version, latest(among=(a.created_at for a in allocations)))
    return {"allocations": by_consumer, "resource_provider_generation": provider.generation}
