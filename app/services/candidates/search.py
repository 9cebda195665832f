"""The candidate search: plain Python over the rows the loader read, no database access.

A candidate is built around an anchor (a root provider). For each anchor, every request group
gets its options: a suffixed group one provider that has all of the group's resources and
traits; the unsuffixed group one provider per resource class, from the anchor's tree or a
sharing provider in an aggregate with it, whose traits together meet the group's. A depth-first
search then picks one option per group, pruned as soon as a choice cannot lead to a valid
candidate (capacity across groups, `group_policy=isolate`, one provider per tree before 1.29),
so no invalid candidate is ever built. Anchors are taken in turn (breadth-first) or one after
the other (depth-first). The number of candidates and of search steps are both bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, islice, product
from typing import NamedTuple

from app.services.capacity import InventoryLimits

Part = tuple[int, int, int]  # (provider id, resource class id, amount)


@dataclass(slots=True)
class Provider:
    id: int
    uuid: str
    parent_id: int | None
    root_id: int
    traits: frozenset[int] = frozenset()
    aggregates: frozenset[int] = frozenset()
    # resource class id -> (limits, current usage)
    inventory: dict[int, tuple[InventoryLimits, int]] = field(default_factory=dict)

    def fits(self, class_id: int, amount: int) -> bool:
        entry = self.inventory.get(class_id)
        return entry is not None and entry[0].fits(entry[1], amount)


@dataclass(frozen=True)
class Group:
    """A request group with names resolved to ids."""

    suffix: str
    resources: tuple[tuple[int, int], ...]  # (class id, amount)
    required: tuple[frozenset[int], ...] = ()  # trait ids: at least one of each set
    forbidden: frozenset[int] = frozenset()
    member_of: tuple[frozenset[int], ...] = ()  # aggregate ids: at least one of each set
    forbidden_aggs: frozenset[int] = frozenset()
    in_tree_root: int | None = None

    @property
    def same_provider(self) -> bool:
        return self.suffix != ""

    @cached_property
    def classes(self) -> tuple[int, ...]:
        return tuple(rc for rc, _ in self.resources)

    @cached_property
    def amounts(self) -> tuple[int, ...]:
        return tuple(amount for _, amount in self.resources)

    def traits_ok(self, traits: frozenset[int]) -> bool:
        return all(any_of & traits for any_of in self.required) and not (self.forbidden & traits)

    def in_aggregates(self, p: Provider) -> bool:
        return all(any_of & p.aggregates for any_of in self.member_of)


# Options and candidates are named tuples, not frozen dataclasses: thousands are built (and
# candidates hashed) per request, and tuples are several times cheaper at both.
class Option(NamedTuple):
    """How one group is met: the amounts taken and the providers it maps to."""

    parts: tuple[Part, ...]
    providers: frozenset[int]


class Candidate(NamedTuple):
    parts: tuple[Part, ...]  # consolidated, sorted
    mappings: tuple[tuple[str, tuple[int, ...]], ...]  # (suffix, provider ids), sorted


@dataclass
class World:
    """What one batch of anchors needs: their trees, plus every sharing provider."""

    providers: dict[int, Provider]
    members: dict[int, list[int]]  # anchor root id -> visible provider ids of its tree
    sharing: list[int]  # ids of providers with MISC_SHARES_VIA_AGGREGATE
    _sharing_cache: dict[int, list[int]] = field(default_factory=dict)
    _by_aggregate: dict[int, list[int]] | None = None

    def tree_aggregates(self, root: int) -> frozenset[int]:
        out: set[int] = set()
        for pid in self.members.get(root, ()):
            out |= self.providers[pid].aggregates
        return frozenset(out)

    def sharing_for(self, root: int) -> list[int]:
        """Sharing providers that can serve the tree of `root`: in an aggregate with it."""
        found = self._sharing_cache.get(root)
        if found is None:
            by_aggregate = self.sharing_by_aggregate()
            ids: set[int] = set()
            if by_aggregate:
                for aggregate in self.tree_aggregates(root):
                    ids.update(by_aggregate.get(aggregate, ()))
            found = self._sharing_cache[root] = sorted(ids)
        return found

    def sharing_by_aggregate(self) -> dict[int, list[int]]:
        if self._by_aggregate is None:
            self._by_aggregate = {}
            for s in self.sharing:
                for aggregate in self.providers[s].aggregates:
                    self._by_aggregate.setdefault(aggregate, []).append(s)
        return self._by_aggregate

    def is_ancestor_or_self(self, ancestor: int, pid: int) -> bool:
        current: int | None = pid
        while current is not None:
            if current == ancestor:
                return True
            p = self.providers.get(current)
            current = p.parent_id if p else None
        return False


@dataclass
class Rules:
    """Request-wide rules of the search."""

    groups: Sequence[Group]
    isolate: bool = False
    same_subtrees: Sequence[frozenset[str]] = ()
    nested: bool = True  # before 1.29: at most one provider of a tree gives resources
    max_candidates: int = 10_000
    breadth_first: bool = True


class Budget:
    """A bound on search steps, so a request with no answer still returns promptly."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int = 1) -> bool:
        self.left -= steps
        return self.left >= 0


# ---------------------------------------------------------------------------
# Options per group and anchor
# ---------------------------------------------------------------------------


def _granular_options(world: World, group: Group, root: int, cap: int) -> list[Option]:
    pool: list[int] = []
    if group.in_tree_root is None or group.in_tree_root == root:
        pool.extend(world.members.get(root, ()))
    pool.extend(
        s
        for s in world.sharing_for(root)
        if group.in_tree_root is None or world.providers[s].root_id == group.in_tree_root
    )
    options: list[Option] = []
    for pid in dict.fromkeys(pool):
        p = world.providers[pid]
        if not (group.traits_ok(p.traits) and group.in_aggregates(p)):
            continue
        if p.aggregates & group.forbidden_aggs:
            continue
        if not all(p.fits(rc, amount) for rc, amount in group.resources):
            continue
        parts = tuple((pid, rc, amount) for rc, amount in group.resources)
        options.append(Option(parts, frozenset([pid])))
        if len(options) >= cap:
            break
    return options


def _unsuffixed_options(
    world: World, group: Group, root: int, rules: Rules, cap: int, budget: Budget
) -> list[Option]:
    if group.in_tree_root is not None and group.in_tree_root != root:
        return []
    anchor = world.providers[root]
    pool: list[int] = list(world.members.get(root, ()))
    if group.in_tree_root is None:
        # A sharing provider itself must be in the requested aggregates.
        pool.extend(s for s in world.sharing_for(root) if group.in_aggregates(world.providers[s]))
    pool = list(dict.fromkeys(pool))
    anchor_in_aggs = bool(group.member_of) and group.in_aggregates(anchor)
    anchor_forbidden = bool(anchor.aggregates & group.forbidden_aggs)
    if anchor_forbidden:
        return []

    def usable(p: Provider) -> bool:
        if p.traits & group.forbidden or p.aggregates & group.forbidden_aggs:
            return False
        return not group.member_of or anchor_in_aggs or group.in_aggregates(p)

    usable_pool = [world.providers[pid] for pid in pool if usable(world.providers[pid])]
    per_class: list[list[int]] = []
    for rc, amount in group.resources:
        choices = [p.id for p in usable_pool if p.fits(rc, amount)]
        if not choices:
            return []
        per_class.append(choices)
    if not group.required and rules.nested:
        # Nothing ties the classes together: every combination is an option.
        combos = islice(product(*per_class), cap)
        budget.spend(len(per_class))
        return [_combined(group, list(combo)) for combo in combos]
    # Traits still obtainable from class i onwards: prunes combinations that cannot complete.
    reachable: list[frozenset[int]] = [frozenset()] * (len(per_class) + 1)
    for i in range(len(per_class) - 1, -1, -1):
        here = frozenset(chain.from_iterable(world.providers[pid].traits for pid in per_class[i]))
        reachable[i] = here | reachable[i + 1]
    walk = _TraitWalk(world, group, per_class, reachable, rules.nested, cap, budget)
    walk.walk(0, [], frozenset())
    return walk.options


@dataclass(slots=True)
class _TraitWalk:
    """One provider per class of an unsuffixed group, depth-first, pruned as soon as the
    group's required traits are out of reach. An object rather than a recursive closure: a
    closure calling itself is a reference cycle, which would keep the world alive until the
    cyclic collector finds it."""

    world: World
    group: Group
    per_class: list[list[int]]
    reachable: list[frozenset[int]]  # traits obtainable from class i onwards
    nested: bool
    cap: int
    budget: Budget
    options: list[Option] = field(default_factory=list)

    def walk(self, i: int, chosen: list[int], traits: frozenset[int]) -> None:
        if len(self.options) >= self.cap or not self.budget.spend():
            return
        reachable = traits | self.reachable[i]
        if not all(any_of & reachable for any_of in self.group.required):
            return
        if i == len(self.per_class):
            self.options.append(_combined(self.group, chosen))
            return
        providers = self.world.providers
        for pid in self.per_class[i]:
            p = providers[pid]
            if not self.nested and any(
                providers[c].root_id == p.root_id and c != pid for c in chosen
            ):
                continue
            chosen.append(pid)
            self.walk(i + 1, chosen, traits | p.traits)
            chosen.pop()


def _combined(group: Group, chosen: Sequence[int]) -> Option:
    """The option taking class i of `group` from provider chosen[i]."""
    return Option(tuple(zip(chosen, group.classes, group.amounts, strict=True)), frozenset(chosen))


def _options(world: World, group: Group, root: int, rules: Rules, budget: Budget) -> list[Option]:
    if group.same_provider:
        return _granular_options(world, group, root, rules.max_candidates)
    return _unsuffixed_options(world, group, root, rules, rules.max_candidates, budget)


# ---------------------------------------------------------------------------
# Combining groups for one anchor
# ---------------------------------------------------------------------------


def _enough_overall(world: World, groups: Sequence[Group], options: list[list[Option]]) -> bool:
    """Cheap test before searching: classes asked by several groups must fit in total."""
    asked: dict[int, int] = {}
    askers: dict[int, int] = {}
    for group in groups:
        for rc, amount in group.resources:
            asked[rc] = asked.get(rc, 0) + amount
            askers[rc] = askers.get(rc, 0) + 1
    for rc, total in asked.items():
        if askers[rc] < 2:
            continue
        providers = {part[0] for opts in options for o in opts for part in o.parts if part[1] == rc}
        free = 0
        for pid in providers:
            limits, used = world.providers[pid].inventory[rc]
            free += max(0, min(limits.capacity - used, limits.max_unit))
        if free < total:
            return False
    return True


def _same_subtree_ok(
    world: World, sets: Sequence[frozenset[str]], chosen: dict[str, Option]
) -> bool:
    for suffixes in sets:
        providers = set().union(*(chosen[s].providers for s in suffixes if s in chosen))
        if len(providers) <= 1:
            continue
        if not any(
            all(world.is_ancestor_or_self(top, pid) for pid in providers) for top in providers
        ):
            return False
    return True


def _anchor_candidates(
    world: World, root: int, rules: Rules, budget: Budget
) -> Iterator[Candidate]:
    options: list[list[Option]] = []
    for group in rules.groups:
        options.append(_options(world, group, root, rules, budget))
        if not options[-1]:
            return  # a group this tree cannot meet: the others need not be looked at
    if len(options) == 1:
        # One group: each option already fits on its own and is a candidate.
        suffix = rules.groups[0].suffix
        for option in options[0]:
            yield Candidate(
                tuple(sorted(option.parts)), ((suffix, tuple(sorted(option.providers))),)
            )
        return
    if not _enough_overall(world, rules.groups, options):
        return
    granular = [g for g in rules.groups if g.same_provider]
    if rules.isolate and len(granular) > 1:
        distinct = {
            pid
            for g, opts in zip(rules.groups, options, strict=True)
            if g.same_provider
            for o in opts
            for pid in o.providers
        }
        if len(distinct) < len(granular):
            return
    # Fewest options first: the search fails (and prunes) as early as possible.
    order = sorted(range(len(rules.groups)), key=lambda i: len(options[i]))
    groups = [rules.groups[i] for i in order]
    ordered = [options[i] for i in order]
    yield from _Combiner(world, rules, budget, groups, ordered).walk(0)


@dataclass(slots=True)
class _Combiner:
    """One option per group (in `groups` order), depth-first, keeping running totals per
    (provider, class) so a choice that cannot fit is dropped at once. An object rather than
    recursive closures: a closure calling itself is a reference cycle, which would keep the
    world alive until the cyclic collector finds it."""

    world: World
    rules: Rules
    budget: Budget
    groups: list[Group]
    options: list[list[Option]]  # per group
    sums: dict[tuple[int, int], int] = field(default_factory=dict)
    isolated: set[int] = field(default_factory=set)
    tree_giver: dict[int, int] = field(default_factory=dict)
    chosen: dict[str, Option] = field(default_factory=dict)

    def add(self, option: Option, group: Group) -> list[tuple[int, int]] | None:
        """Take `option` into the running totals, or None (nothing changed) if it can't fit."""
        providers, sums, nested = self.world.providers, self.sums, self.rules.nested
        for pid, rc, amount in option.parts:
            limits, used = providers[pid].inventory[rc]
            if not limits.fits(used, sums.get((pid, rc), 0) + amount):
                return None
            if not nested:
                giver = self.tree_giver.get(providers[pid].root_id)
                if giver is not None and giver != pid:
                    return None
        if self.rules.isolate and group.same_provider and option.providers & self.isolated:
            return None
        touched = []
        for pid, rc, amount in option.parts:
            sums[(pid, rc)] = sums.get((pid, rc), 0) + amount
            touched.append((pid, rc))
            if not nested:
                self.tree_giver.setdefault(providers[pid].root_id, pid)
        return touched

    def undo(self, option: Option, touched: list[tuple[int, int]], givers: dict[int, int]) -> None:
        sums = self.sums
        for (pid, rc), (_, _, amount) in zip(touched, option.parts, strict=True):
            sums[(pid, rc)] -= amount
            if not sums[(pid, rc)]:
                del sums[(pid, rc)]
        if not self.rules.nested:
            self.tree_giver.clear()
            self.tree_giver.update(givers)

    def walk(self, i: int) -> Iterator[Candidate]:
        if i == len(self.groups):
            if _same_subtree_ok(self.world, self.rules.same_subtrees, self.chosen):
                yield _candidate(self.sums, self.chosen)
            return
        group = self.groups[i]
        isolating = self.rules.isolate and group.same_provider
        for option in self.options[i]:
            if not self.budget.spend():
                return
            givers = dict(self.tree_giver)
            touched = self.add(option, group)
            if touched is None:
                continue
            if isolating:
                self.isolated.update(option.providers)
            self.chosen[group.suffix] = option
            yield from self.walk(i + 1)
            del self.chosen[group.suffix]
            if isolating:
                self.isolated.difference_update(option.providers)
            self.undo(option, touched, givers)


def _candidate(sums: dict[tuple[int, int], int], chosen: dict[str, Option]) -> Candidate:
    parts = tuple(sorted((pid, rc, amount) for (pid, rc), amount in sums.items()))
    mappings = tuple(
        sorted((suffix, tuple(sorted(option.providers))) for suffix, option in chosen.items())
    )
    return Candidate(parts, mappings)


def search(
    world: World, anchors: Sequence[int], rules: Rules, budget: Budget
) -> Iterator[Candidate]:
    """Valid candidates around `anchors`, possibly with repeats (a sharing provider alone can
    be reached from several anchors): the caller removes them."""
    generators = [_anchor_candidates(world, root, rules, budget) for root in anchors]
    if not rules.breadth_first:
        yield from chain.from_iterable(generators)
        return
    active = list(generators)
    while active:
        still = []
        for gen in active:
            item = next(gen, None)
            if item is not None:
                yield item
                still.append(gen)
        active = still
