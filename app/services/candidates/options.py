"""Options: the ways one request group can be met around one anchor (a root provider).

A suffixed group takes one provider that has all of the group's resources and traits; the
unsuffixed group one provider per resource class, from the anchor's tree or a sharing provider
in an aggregate with it, whose traits together meet the group's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, islice, product

from app.services.candidates.model import Budget, Group, Option, Provider, Rules, World


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


def options_for(
    world: World, group: Group, root: int, rules: Rules, budget: Budget
) -> list[Option]:
    """The options of `group` around the anchor `root`, at most `rules.max_candidates`."""
    if group.same_provider:
        return _granular_options(world, group, root, rules.max_candidates)
    return _unsuffixed_options(world, group, root, rules, rules.max_candidates, budget)
