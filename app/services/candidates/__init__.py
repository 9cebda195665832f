"""GET /allocation_candidates: which providers could satisfy a request, as claims ready to PUT.

`find()` resolves names to ids (unknown classes or traits are 400), then walks the root
providers in batches of trees (ascending id), searching each batch (`search.py`) until it has
`limit` (or the configured cap of) distinct candidates, and finally reads the summaries of the
providers involved. Capacity is judged by `app.services.capacity`, like allocation writes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz import actions
from app.authz.access import Access
from app.errors import bad_request
from app.microversion import Microversion
from app.models import ResourceProvider
from app.services.candidates import loader
from app.services.candidates.loader import Names, RootFilter, Summary
from app.services.candidates.model import Budget, Candidate, Group, Provider, Rules, World
from app.services.candidates.search import search
from app.services.request_groups import NESTED, CandidatesRequest, RequestGroup

SHARES_VIA_AGGREGATE = "MISC_SHARES_VIA_AGGREGATE"
# Trees read per batch: the first batch is sized by the limit, later ones by this.
BATCH_ROOTS = 1000
MIN_BATCH_ROOTS = 16
# Search steps allowed per candidate wanted (and at least MIN_STEPS) before giving up.
STEPS_PER_CANDIDATE = 50
MIN_STEPS = 100_000


@dataclass
class Result:
    candidates: list[Candidate] = field(default_factory=list)
    uuids: dict[int, str] = field(default_factory=dict)  # of the providers in candidates
    summaries: dict[int, Summary] = field(default_factory=dict)
    names: Names = field(default_factory=Names)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector around the building of a response.

    The search and the response build allocate many small objects without cycles; left alone,
    the collector runs passes over them in the middle of the work, which cost more than the
    work itself. Reference counting still frees everything as usual, and what is freed before
    the pause ends never meets the collector at all. A pause may span awaits: the requests
    served meanwhile run without the collector for at most that long (the pause that disabled
    it is the one that enables it again), and the cycles they leave are found afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _NoMatch(Exception):
    """Something the request names does not exist in a way that means: no candidates."""


async def find(
    session: AsyncSession,
    request: CandidatesRequest,
    version: Microversion,
    access: Access,
    *,
    max_candidates: int,
    breadth_first: bool = True,
) -> Result:
    visible = access.where(actions.CANDIDATES_READ, ResourceProvider.owner_project_id)
    wanted_classes, wanted_traits = request.resource_class_names(), request.trait_names()
    aggregate_uuids: set[str] = set()
    for g in request.groups:
        aggregate_uuids |= g.aggregates.uuids()
    ids = await loader.ids_by_name(
        session, wanted_classes, wanted_traits | {SHARES_VIA_AGGREGATE}, aggregate_uuids
    )
    classes, traits = ids.classes, ids.traits
    if wanted_classes - set(classes):
        raise bad_request(f"unknown resource classes {sorted(wanted_classes - set(classes))[:5]}")
    if wanted_traits - set(traits):
        raise bad_request(f"unknown traits {sorted(wanted_traits - set(traits))[:5]}")
    try:
        groups = [
            await _compile_one(session, g, classes, traits, ids.aggregates, visible)
            for g in request.groups
        ]
    except _NoMatch:
        return Result()
    result = Result()
    shares = traits.get(SHARES_VIA_AGGREGATE)
    roots = _root_filter(request, groups, traits, visible)
    if roots is None:
        return result
    rules = Rules(
        groups=groups,
        isolate=request.group_policy == "isolate",
        same_subtrees=request.same_subtrees,
        nested=version.at_least(NESTED),
        max_candidates=max_candidates,
        breadth_first=breadth_first,
    )
    target = min(request.limit or max_candidates, max_candidates)
    await _collect(session, result, rules, roots, visible, shares, target)
    return result


async def _compile_one(
    session: AsyncSession,
    g: RequestGroup,
    classes: dict[str, int],
    traits: dict[str, int],
    aggregates: dict[str, int],
    visible: ColumnElement[bool],
) -> Group:
    member_of = []
    for any_of in g.aggregates.required:
        known = frozenset(aggregates[u] for u in any_of if u in aggregates)
        if not known:
            raise _NoMatch()
        member_of.append(known)
    in_tree_root = None
    if g.in_tree is not None:
        in_tree_root = await loader.root_of(session, g.in_tree, visible)
        if in_tree_root is None:
            raise _NoMatch()
    return Group(
        suffix=g.suffix,
        resources=tuple((classes[name], amount) for name, amount in g.resources.items()),
        required=tuple(frozenset(traits[t] for t in any_of) for any_of in g.traits.required),
        forbidden=frozenset(traits[t] for t in g.traits.forbidden),
        member_of=tuple(member_of),
        forbidden_aggs=frozenset(aggregates[u] for u in g.aggregates.forbidden if u in aggregates),
        in_tree_root=in_tree_root,
    )


def _root_filter(
    request: CandidatesRequest,
    groups: Sequence[Group],
    traits: dict[str, int],
    visible: ColumnElement[bool],
) -> RootFilter | None:
    """Which roots may anchor a candidate; None when none can."""
    # The unsuffixed group takes nothing from outside its in_tree: it pins the anchor.
    pinned = {g.in_tree_root for g in groups if g.in_tree_root is not None and not g.same_provider}
    root_required = [traits[t] for any_of in request.root_traits.required for t in any_of]
    return RootFilter(
        visible=visible,
        required=root_required,
        forbidden=[traits[t] for t in request.root_traits.forbidden],
        only=sorted(pinned) if pinned else None,
    )


async def _collect(
    session: AsyncSession,
    result: Result,
    rules: Rules,
    roots: RootFilter,
    visible: ColumnElement[bool],
    shares: int | None,
    target: int,
) -> None:
    """Search batches of trees until `target` distinct candidates (or the budget) are reached,
    summarising the providers involved as each batch is done. The first batch also reads the
    trees of every sharing provider."""
    seen: set[Candidate] = set()
    budget = Budget(max(MIN_STEPS, STEPS_PER_CANDIDATE * target))
    # Half as many roots as candidates wanted: each root gives at most a couple (spread),
    # without reading twice the trees a limit needs.
    after, batch = 0, max(MIN_BATCH_ROOTS, min(BATCH_ROOTS, target // 2))
    sharing: dict[int, Provider] | None = None
    while len(result.candidates) < target and budget.left > 0:
        anchors = list(await session.scalars(loader.next_roots(roots, after, batch)))
        if not anchors:
            break
        after = anchors[-1]
        also: list[int] = []
        if sharing is None and shares is not None:
            also = [r for r in await session.scalars(loader.sharing_roots(shares, visible)) if r]
        trees = await loader.load_trees(session, anchors, visible, result.names, also=also)
        if sharing is None:
            sharing = _sharing_trees(trees, shares)
        world = loader.world_of(trees, sharing, shares)
        found: list[Candidate] = []
        for candidate in search(world, anchors, rules, budget):
            if candidate in seen:
                continue
            seen.add(candidate)
            found.append(candidate)
            if len(result.candidates) + len(found) >= target:
                break
        result.candidates.extend(found)
        _summarise(result, world, found, nested=rules.nested)
        # Grow the batches, faster while they find nothing.
        batch = min(BATCH_ROOTS, batch * (2 if found else 4))


def _sharing_trees(trees: dict[int, Provider], shares: int | None) -> dict[int, Provider]:
    """The trees holding a sharing provider, kept for the batches after the first."""
    roots = {p.root_id for p in trees.values() if shares is not None and shares in p.traits}
    return {pid: p for pid, p in trees.items() if p.root_id in roots}


def _summarise(result: Result, world: World, found: list[Candidate], *, nested: bool) -> None:
    """Summaries of the providers giving resources (before 1.29) or of their whole trees."""
    givers = {pid for c in found for pid, _, _ in c.parts}
    for c in found:
        for _, pids in c.mappings:
            for pid in pids:
                result.uuids[pid] = world.providers[pid].uuid
    for pid in givers:
        result.uuids[pid] = world.providers[pid].uuid
    if nested:
        roots = {world.providers[pid].root_id for pid in givers}
        wanted = [pid for pid, p in world.providers.items() if p.root_id in roots]
    else:
        wanted = sorted(givers)
    new = [pid for pid in wanted if pid not in result.summaries]
    result.summaries.update(loader.summarise(world.providers, new, result.names))
