"""/traits (1.6+): list with filters, show, create (PUT), delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.authz.dependencies import TraitsRead, TraitsWrite
from app.dependencies import (
    CustomPathName,
    DatabaseDep,
    PathName,
    SessionDep,
    StaleSessionDep,
    Version,
    since,
)
from app.errors import QUERY_BAD_VALUE, bad_request
from app.httpcache import set_last_modified
from app.query import Query as QueryString
from app.requests import location_url
from app.schemas.traits import TraitList
from app.services import traits as service

router = APIRouter(prefix="/traits", tags=["traits"], dependencies=[since(6)])

MAX_NAMES = 1000


def _filters(query: QueryString) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    name = query.get("name")
    if name is not None:
        if name.startswith("in:"):
            names = [n for n in name[3:].split(",") if n]
            if not names or len(names) > MAX_NAMES:
                raise bad_request("bad name=in: list", QUERY_BAD_VALUE)
            filters["names"] = names
        elif name.startswith("startswith:"):
            filters["prefix"] = name[len("startswith:") :]
        else:
            raise bad_request(f"bad name filter {name[:64]!r}", QUERY_BAD_VALUE)
    associated = query.get("associated")
    if associated is not None:
        if associated not in ("true", "false"):
            raise bad_request("associated must be true or false", QUERY_BAD_VALUE)
        filters["associated"] = associated == "true"
    return filters


@router.get("", response_model=TraitList)
async def list_traits(
    request: Request,
    response: Response,
    version: Version,
    session: StaleSessionDep,
    _: TraitsRead,
    name: Annotated[
        str | None,
        Query(max_length=8192, description="`in:A,B` or `startswith:PREFIX`"),
    ] = None,
    associated: Annotated[str | None, Query(pattern="^(true|false)$")] = None,
) -> dict[str, Any]:
    filters = _filters(QueryString(request, {"name", "associated"}))
    names, modified = await service.list_names(session, **filters)
    set_last_modified(response, version, modified)
    return {"traits": names}


@router.get("/{name}", status_code=204, response_class=Response, responses={404: {}})
async def show_trait(
    name: PathName, version: Version, session: SessionDep, _: TraitsRead
) -> Response:
    trait = await service.get(session, name)
    out = Response(status_code=204)
    set_last_modified(out, version, trait.updated_at or trait.created_at)
    return out


@router.put(
    "/{name}",
    status_code=201,
    response_class=Response,
    responses={204: {"description": "Already exists"}},
)
async def create_trait(
    request: Request,
    name: CustomPathName,
    version: Version,
    database: DatabaseDep,
    _: TraitsWrite,
) -> Response:
    trait, created = await database.write(lambda s: service.ensure(s, name))
    # Created or already there, the answer says where the trait is (and, from 1.15, since when).
    out = Response(
        status_code=201 if created else 204,
        headers={"location": location_url(request, f"/traits/{name}")},
    )
    set_last_modified(out, version, trait.created_at)
    return out


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_trait(name: PathName, database: DatabaseDep, _: TraitsWrite) -> Response:
    await database.write(lambda s: service.delete(s, name))
    return Response(status_code=204)
