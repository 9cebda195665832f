"""What the candidate search works on: providers as the loader read them, request groups with
names resolved to ids, the world of one batch of anchors, and the options and candidates the
search builds. Plain data, no database access."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
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
