"""/allocation_candidates (1.10+): which providers could satisfy a request, as ready claims."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.authz.dependencies import CandidatesRead
from app.dependencies import SettingsDep, StaleSessionDep, Version, since
from app.httpcache import set_last_modified
from app.microversion import Microversion
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
from app.services.candidates.model import Candidate, Part
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
    session: StaleSessionDep,
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
) -> Response:
    query = QueryString(request, WIDE_KEYS, repeatable=REPEATABLE, allowed_prefixes=GROUP_KEYS)
    params = {key: query.get_all(key) for key in list(query.keys())}
    wanted = parse_candidates_request(params, version)
    # Reading, searching and writing the body under one pause of the collector (see gc_paused).
    with service.gc_paused():
        result = await service.find(
            session,
            wanted,
            version,
            access,
            max_candidates=settings.candidates_max,
            breadth_first=settings.candidates_strategy == "breadth-first",
        )
        body = _render(result, wanted, version)
        del result  # freed before the collector resumes: it then finds nothing new to walk
    response = Response(body, media_type="application/json")
    set_last_modified(response, version, None)
    return response


def _render(result: service.Result, wanted: CandidatesRequest, version: Microversion) -> bytes:
    """The response body, written as JSON text directly: a thousand candidates are ~10,000
    small objects, and building them as dicts only to have `json` walk them again took most of
    the response's time. Every string (uuid, class, trait, suffix) is JSON-quoted once, and
    each piece that candidates share (a provider's amounts, the mappings) is written once."""
    quote = _Quoter()
    writer = _RequestWriter(
        uuids={pid: quote(uuid) for pid, uuid in result.uuids.items()},
        classes={rc: quote(name) for rc, name in result.names.classes.items()},
        quote=quote,
        dict_format=version.at_least(DICT_FORMAT),
        mappings=version.at_least(MAPPINGS),
    )
    requests = ",".join(writer.request(c) for c in result.candidates)
    summaries = ",".join(_summaries(result, wanted, version, quote))
    text = f'{{"allocation_requests":[{requests}],"provider_summaries":{{{summaries}}}}}'
    return text.encode()


# Strings that are their own JSON text between quotes (uuids, class and trait names, suffixes).
_NEEDS_NO_ESCAPE = re.compile(r"[A-Za-z0-9_.:-]*").fullmatch


class _Quoter(dict[str, str]):
    """str -> its JSON text, each distinct string encoded once."""

    def __missing__(self, value: str) -> str:
        plain = _NEEDS_NO_ESCAPE(value)
        quoted = self[value] = f'"{value}"' if plain else json.dumps(value, ensure_ascii=False)
        return quoted

    def __call__(self, value: str) -> str:
        return self[value]


@dataclass
class _RequestWriter:
    """Writes allocation requests, remembering the text of each provider's share of a
    candidate and of each mapping: candidates mostly recombine the same few."""

    uuids: dict[int, str]  # provider id -> quoted uuid
    classes: dict[int, str]  # class id -> quoted name
    quote: _Quoter
    dict_format: bool
    mappings: bool
    shares: dict[tuple[Part, ...], str] = field(default_factory=dict)
    mapped: dict[tuple[tuple[str, tuple[int, ...]], ...], str] = field(default_factory=dict)

    def request(self, c: Candidate) -> str:
        # Parts are sorted by provider: each provider's classes are consecutive.
        parts, shares, given = c.parts, self.shares, []
        start = 0
        for end in range(1, len(parts) + 1):
            if end == len(parts) or parts[end][0] != parts[start][0]:
                share = parts[start:end]
                text = shares.get(share)
                if text is None:
                    text = shares[share] = self._share(share)
                given.append(text)
                start = end
        if not self.dict_format:
            return f'{{"allocations":[{",".join(given)}]}}'
        if not self.mappings:
            return f'{{"allocations":{{{",".join(given)}}}}}'
        mapped = self.mapped.get(c.mappings)
        if mapped is None:
            mapped = self.mapped[c.mappings] = ",".join(
                f"{self.quote(suffix)}:[{','.join(self.uuids[pid] for pid in pids)}]"
                for suffix, pids in c.mappings
            )
        return f'{{"allocations":{{{",".join(given)}}},"mappings":{{{mapped}}}}}'

    def _share(self, share: tuple[Part, ...]) -> str:
        """One provider's part of an allocation request."""
        uuid = self.uuids[share[0][0]]
        resources = ",".join(f"{self.classes[rc]}:{amount}" for _, rc, amount in share)
        if not self.dict_format:
            return f'{{"resource_provider":{{"uuid":{uuid}}},"resources":{{{resources}}}}}'
        return f'{uuid}:{{"resources":{{{resources}}}}}'


def _summaries(
    result: service.Result, wanted: CandidatesRequest, version: Microversion, quote: _Quoter
) -> Iterator[str]:
    requested = wanted.resource_class_names()
    every_class = version.at_least(ALL_RESOURCES_IN_SUMMARIES)
    traits, tree = version.at_least(TRAITS_IN_SUMMARIES), version.at_least(TREE_UUIDS)
    # Many providers look alike (NUMA nodes of one shape): their pieces are written once.
    resources_text: dict[tuple[tuple[str, tuple[int, int]], ...], str] = {}
    traits_text: dict[tuple[str, ...], str] = {}
    for s in result.summaries.values():
        shape = tuple(s.resources.items())
        resources = resources_text.get(shape)
        if resources is None:
            resources = resources_text[shape] = ",".join(
                f'{quote(name)}:{{"capacity":{capacity},"used":{used}}}'
                for name, (capacity, used) in shape
                if every_class or name in requested
            )
        entry = f'"resources":{{{resources}}}'
        if traits:
            names = tuple(s.traits)
            listed = traits_text.get(names)
            if listed is None:
                listed = traits_text[names] = ",".join(quote(t) for t in names)
            entry += f',"traits":[{listed}]'
        if tree:
            parent = quote(s.parent_uuid) if s.parent_uuid is not None else "null"
            entry += f',"parent_provider_uuid":{parent},"root_provider_uuid":{quote(s.root_uuid)}'
        yield f"{quote(s.uuid)}:{{{entry}}}"
