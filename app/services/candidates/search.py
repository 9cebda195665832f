"""The candidate search: plain Python over the rows the loader read, no database access.

A candidate is built around an anchor (a root provider). For each anchor, every request group
gets its options (`options.py`). A depth-first search then picks one option per group, pruned
as soon as a choice cannot lead to a valid candidate (capacity across groups,
`group_policy=isolate`, one provider per tree before 1.29), so no invalid candidate is ever
built. Anchors are taken in turn (breadth-first) or one after the other (depth-first). The
number of candidates and of search steps are both bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

from app.services.candidates.model import (
    Budget,
    Candidate,
    Group,
    Option,
    Rules,
    World,
)
from app.services.candidates.options import options_for


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
        options.append(options_for(world, group, root, rules, budget))
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
