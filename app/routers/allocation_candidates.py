"""/allocation_candidates (1.10+): which providers could satisfy a request, as ready claims."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.authz.dependencies import CandidatesRead
from app.dependencies import SessionDep, SettingsDep
from app.httpcache import set_last_modified
from app.microversion import Microversion, Version, since
from app.query import (
    AGGREGATES_MAX_LENGTH,
    RESOURCES_MAX_LENGTH,
    TRAITS_MAX_LENGTH,
    UUID_MAX_LENGTH,
    WORD_MAX_LENGTH,
)
from app.query import Query as QueryString
from app.schemas.allocation_candidates import AllocationCandidates
from app.services import candidates as service
from app.services.candidates.search import Candidate
from app.services.request_groups import CandidatesRequest, parse_candidates_request

router = APIRouter(
    prefix="/allocation_candidates", tags=["allocation candidates"], dependencies=[since(10)]
)

GROUP_KEYS = ("resources", "required", "member_of", "in_tree")
WIDE_KEYS = {"limit", "group_policy", "root_required", "same_subtree"}
REPEATABLE = ("required", "member_of", "same_subtree", "limit", "group_policy")

DICT_FORMAT = 12
TRAITS_IN_SUMMARIES = 17
ALL_RESOURCES_IN_SUMMARIES = 27
TREE_UUIDS = 29
MAPPINGS = 34


@router.get("", response_model=None, responses={200: {"model": AllocationCandidates}})
async def list_allocation_candidates(
    request: Request,
    version: Version,
    session: SessionDep,
    settings: SettingsDep,
    access: CandidatesRead,
    resources: Annotated[
        str | None,
        Query(
            max_length=RESOURCES_MAX_LENGTH,
            description="`VCPU:1,MEMORY_MB:512`; also `resources<suffix>` from 1.25.",
        ),
    ] = None,
    required: Annotated[
        str | None,
        Query(
            max_length=TRAITS_MAX_LENGTH,
            description="Traits: `A,!B` (! from 1.22), `in:A,B` (1.39); `required<suffix>`.",
        ),
    ] = None,
    member_of: Annotated[
        str | None,
        Query(
            max_length=AGGREGATES_MAX_LENGTH,
            description="Aggregates: `uuid`, `in:u1,u2`, `!uuid` (1.32); repeatable (1.24).",
        ),
    ] = None,
    in_tree: Annotated[
        str | None, Query(max_length=UUID_MAX_LENGTH, description="A provider uuid (1.31).")
    ] = None,
    limit: Annotated[
        str | None, Query(max_length=WORD_MAX_LENGTH, description="A positive integer (1.16).")
    ] = None,
    group_policy: Annotated[
        str | None, Query(max_length=WORD_MAX_LENGTH, description="`none` or `isolate` (1.25).")
    ] = None,
    root_required: Annotated[
        str | None, Query(max_length=TRAITS_MAX_LENGTH, description="Root traits (1.35).")
    ] = None,
    same_subtree: Annotated[
        str | None, Query(max_length=TRAITS_MAX_LENGTH, description="Group suffixes (1.36).")
    ] = None,
) -> JSONResponse:
    query = QueryString(request, WIDE_KEYS, repeatable=REPEATABLE, allowed_prefixes=GROUP_KEYS)
    params = {key: query.get_all(key) for key in list(query.keys())}
    wanted = parse_candidates_request(params, version)
    result = await service.find(
        session,
        wanted,
        version,
        access,
        max_candidates=settings.candidates_max,
        breadth_first=settings.candidates_strategy == "breadth-first",
    )
    with service.gc_paused():
        response = JSONResponse(_body(result, wanted, version))
    set_last_modified(response, version, None)
    return response


def _body(
    result: service.Result, wanted: CandidatesRequest, version: Microversion
) -> dict[str, Any]:
    dict_format, mappings = version.at_least(DICT_FORMAT), version.at_least(MAPPINGS)
    return {
        "allocation_requests": [
            _request(c, result, dict_format=dict_format, mappings=mappings)
            for c in result.candidates
        ],
        "provider_summaries": _summaries(result, wanted, version),
    }


def _request(
    c: Candidate, result: service.Result, *, dict_format: bool, mappings: bool
) -> dict[str, Any]:
    uuids, classes = result.uuids, result.names.classes
    by_provider: dict[str, dict[str, int]] = {}
    for pid, rc, amount in c.parts:
        by_provider.setdefault(uuids[pid], {})[classes[rc]] = amount
    if not dict_format:
        return {
            "allocations": [
                {"resource_provider": {"uuid": uuid}, "resources": resources}
                for uuid, resources in by_provider.items()
            ]
        }
    out: dict[str, Any] = {
        "allocations": {uuid: {"resources": res} for uuid, res in by_provider.items()}
    }
    if mappings:
        out["mappings"] = {suffix: [uuids[pid] for pid in pids] for suffix, pids in c.mappings}
    return out


def _summaries(
    result: service.Result, wanted: CandidatesRequest, version: Microversion
) -> dict[str, Any]:
    requested = wanted.resource_class_names()
    every_class = version.at_least(ALL_RESOURCES_IN_SUMMARIES)
    traits, tree = version.at_least(TRAITS_IN_SUMMARIES), version.at_least(TREE_UUIDS)
    out: dict[str, Any] = {}
    for s in result.summaries.values():
        entry: dict[str, Any] = {
            "resources": {
                name: {"capacity": capacity, "used": used}
                for name, (capacity, used) in s.resources.items()
                if every_class or name in requested
            }
        }
        if traits:
            entry["traits"] = s.traits
        if tree:
            entry["parent_provider_uuid"] = s.parent_uuid
            entry["root_provider_uuid"] = s.root_uuid
        out[s.uuid] = entry
    return out
