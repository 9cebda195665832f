"""Parsing of the query values that select providers, with Placement's microversion rules.

Used by GET /allocation_candidates (request groups) and GET /resource_providers (filters).
Each `parse_*` function reads one value (or the repeated values of one key) and returns a small
frozen dataclass; bad input raises `ApiError` 400 with the code Placement answers with
(most of Placement's value errors carry `placement.undefined_code`).

Existence of resource classes, traits and providers is checked by the services that use these
values, since that needs the database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.errors import (
    QUERY_BAD_VALUE,
    QUERY_DUPLICATE_KEY,
    QUERY_MISSING_VALUE,
    bad_request,
)
from app.microversion import Microversion

# Microversions at which query features appear.
FORBIDDEN_TRAITS = 22  # required=!TRAIT
MULTIPLE_MEMBER_OF = 24  # member_of repeated
FORBIDDEN_AGGREGATES = 32  # member_of=!uuid, member_of=!in:uuid,uuid
ANY_TRAITS = 39  # required=in:A,B and required repeated

# Request groups (GET /allocation_candidates).
GRANULAR = 25  # resourcesN, requiredN, member_ofN, group_policy
NESTED = 29  # nested providers take part in candidates
IN_TREE = 31  # in_tree, in_treeN
STRING_SUFFIXES = 33  # resources_COMPUTE
MAPPINGS = 34
ROOT_REQUIRED = 35
SAME_SUBTREE = 36  # resourceless groups allowed when named in same_subtree
LIMIT = 16
REQUIRED = 17
MEMBER_OF = 21

GROUP_POLICIES = ("none", "isolate")
# More distinct request groups than this are refused: the search is bounded per group.
MAX_GROUPS = 32

_NUMERIC_SUFFIX = r"[1-9][0-9]*"
_STRING_SUFFIX = r"[a-zA-Z0-9_-]{1,64}"
_LIMIT_RE = re.compile(r"^[1-9][0-9]*$")
_AMOUNT_RE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class TraitQuery:
    """Traits a provider must (each `required` set: at least one of it) and must not have."""

    required: tuple[frozenset[str], ...] = ()
    forbidden: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.required or self.forbidden)

    def names(self) -> set[str]:
        """Every trait name mentioned, for the existence check."""
        out = set(self.forbidden)
        for any_of in self.required:
            out |= any_of
        return out

    def merged(self, other: TraitQuery) -> TraitQuery:
        return TraitQuery(self.required + other.required, self.forbidden | other.forbidden)

    def conflicts(self) -> list[frozenset[str]]:
        """Required sets that every member of is also forbidden: nothing can match them."""
        return [any_of for any_of in self.required if any_of <= self.forbidden]

    def matches(self, traits: set[str] | frozenset[str]) -> bool:
        return all(any_of & traits for any_of in self.required) and not (self.forbidden & traits)


@dataclass(frozen=True)
class AggregateQuery:
    """Aggregates (uuids) a provider must be in (each set: at least one) and must not be in."""

    required: tuple[frozenset[str], ...] = ()
    forbidden: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.required or self.forbidden)

    def uuids(self) -> set[str]:
        out = set(self.forbidden)
        for any_of in self.required:
            out |= any_of
        return out

    def merged(self, other: AggregateQuery) -> AggregateQuery:
        return AggregateQuery(self.required + other.required, self.forbidden | other.forbidden)

    def matches(self, aggregates: set[str] | frozenset[str]) -> bool:
        return all(any_of & aggregates for any_of in self.required) and not (
            self.forbidden & aggregates
        )


# ---------------------------------------------------------------------------
# Single values
# ---------------------------------------------------------------------------


def parse_resources(value: str) -> dict[str, int]:
    """`VCPU:1,MEMORY_MB:512` -> {"VCPU": 1, "MEMORY_MB": 512}; amounts are integers >= 1."""
    if value.strip() == "":
        raise bad_request("empty resources value")
    result: dict[str, int] = {}
    for item in value.split(","):
        parts = item.split(":")
        if len(parts) != 2:
            raise bad_request(f"badly formed resources item {item[:80]!r}")
        name, amount = parts
        if not _AMOUNT_RE.match(amount.strip()):
            raise bad_request(f"resources amount for {name[:80]!r} is not an integer")
        number = int(amount)
        if number < 1:
            raise bad_request(f"resources amount for {name[:80]!r} is below 1")
        result[name] = number
    return result


def parse_required(
    value: str, version: Microversion, *, allow_any_of: bool | None = None
) -> TraitQuery:
    """One value of `required`: `A,B` (all of), `A,!B` (1.22+), `in:A,B` (any of, 1.39+).

    `allow_any_of` overrides the version rule for `in:` (root_required never allows it).
    """
    allow_forbidden = version.at_least(FORBIDDEN_TRAITS)
    if allow_any_of is None:
        allow_any_of = version.at_least(ANY_TRAITS)
    if value.startswith("in:"):
        if not allow_any_of:
            raise bad_request("the in: form of required is not available here")
        any_of = frozenset(name.strip() for name in value[3:].split(","))
        if not all(any_of):
            raise bad_request("empty trait name in required")
        if any(name.startswith("!") for name in any_of):
            raise bad_request("the in: form of required cannot forbid traits")
        return TraitQuery(required=(any_of,))
    names = [name.strip() for name in value.split(",")]
    # Like Placement, any number of leading "!" mean "forbidden" ("!!FOO" forbids FOO).
    forbidden = frozenset(name.lstrip("!") for name in names if name.startswith("!"))
    if not all(names) or not all(forbidden):
        raise bad_request("empty trait name in required")
    if forbidden and not allow_forbidden:
        raise bad_request("forbidden traits need microversion 1.22")
    required = tuple(frozenset([name]) for name in dict.fromkeys(names) if not name.startswith("!"))
    return TraitQuery(required=required, forbidden=forbidden)


def parse_required_values(values: Sequence[str], version: Microversion) -> TraitQuery:
    """All values of one `required` key: repeats add up from 1.39; before, the last one wins."""
    if not version.at_least(ANY_TRAITS):
        values = values[-1:]
    result = TraitQuery()
    for value in values:
        result = result.merged(parse_required(value, version))
    return result


def _canonical_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise bad_request(f"{what} is not a uuid") from None


def parse_member_of(value: str, version: Microversion) -> AggregateQuery:
    """One value of `member_of`: `uuid`, `in:u1,u2`, `!uuid`, `!in:u1,u2` (the last two 1.32+)."""
    if "," in value and not value.startswith(("in:", "!in:")):
        raise bad_request("several member_of uuids need the in: prefix")
    if value.startswith("!in:"):
        raw, negative = value[4:].split(","), True
    elif value.startswith("!"):
        raw, negative = [value[1:]], True
    elif value.startswith("in:"):
        raw, negative = value[3:].split(","), False
    else:
        raw, negative = [value], False
    uuids = frozenset(_canonical_uuid(item, "member_of value") for item in raw)
    if negative:
        if not version.at_least(FORBIDDEN_AGGREGATES):
            raise bad_request("forbidden member_of needs microversion 1.32")
        return AggregateQuery(forbidden=uuids)
    return AggregateQuery(required=(uuids,))


def parse_member_of_values(values: Sequence[str], version: Microversion) -> AggregateQuery:
    """All values of one `member_of` key: repeating the key is allowed from 1.24."""
    if len(values) > 1 and not version.at_least(MULTIPLE_MEMBER_OF):
        raise bad_request("member_of repeated before microversion 1.24")
    result = AggregateQuery()
    for value in values:
        result = result.merged(parse_member_of(value, version))
    return result


def parse_in_tree(value: str) -> str:
    """`in_tree=<provider uuid>`, answered as the canonical uuid string."""
    return _canonical_uuid(value, "in_tree value")


def parse_limit(value: str) -> int:
    if not _LIMIT_RE.match(value):
        raise bad_request("limit is not a positive integer")
    return int(value)


# ---------------------------------------------------------------------------
# Request groups (GET /allocation_candidates)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestGroup:
    """One request group. The unsuffixed group ("") may spread over a tree and sharing
    providers; a suffixed (granular) group is satisfied by one provider."""

    suffix: str
    resources: dict[str, int] = field(default_factory=dict)
    traits: TraitQuery = TraitQuery()
    aggregates: AggregateQuery = AggregateQuery()
    in_tree: str | None = None

    @property
    def same_provider(self) -> bool:
        return self.suffix != ""


@dataclass(frozen=True)
class CandidatesRequest:
    """Everything a GET /allocation_candidates asks for."""

    groups: tuple[RequestGroup, ...]
    limit: int | None = None
    group_policy: str | None = None
    root_traits: TraitQuery = TraitQuery()
    same_subtrees: tuple[frozenset[str], ...] = ()

    def resource_class_names(self) -> set[str]:
        return {name for group in self.groups for name in group.resources}

    def trait_names(self) -> set[str]:
        out = self.root_traits.names()
        for group in self.groups:
            out |= group.traits.names()
        return out


_PREFIXES = ("resources", "required", "member_of", "in_tree")


def _key_pattern(version: Microversion) -> re.Pattern[str]:
    prefixes = list(_PREFIXES[:1])
    if version.at_least(REQUIRED):
        prefixes.append("required")
    if version.at_least(MEMBER_OF):
        prefixes.append("member_of")
    if version.at_least(IN_TREE):
        prefixes.append("in_tree")
    if not version.at_least(GRANULAR):
        return re.compile(rf"^({'|'.join(prefixes)})()$")
    suffix = _STRING_SUFFIX if version.at_least(STRING_SUFFIXES) else _NUMERIC_SUFFIX
    return re.compile(rf"^({'|'.join(prefixes)})({suffix})?$")


def _wide_keys(version: Microversion) -> set[str]:
    keys = set()
    if version.at_least(LIMIT):
        keys.add("limit")
    if version.at_least(GRANULAR):
        keys.add("group_policy")
    if version.at_least(ROOT_REQUIRED):
        keys.add("root_required")
    if version.at_least(SAME_SUBTREE):
        keys.add("same_subtree")
    return keys


def _single(values: Sequence[str], key: str) -> str:
    if len(values) > 1:
        raise bad_request(f"{key} repeated", QUERY_DUPLICATE_KEY)
    return values[0]


def parse_candidates_request(
    params: Mapping[str, Sequence[str]], version: Microversion
) -> CandidatesRequest:
    """Every query parameter of GET /allocation_candidates (`params`: key -> its values)."""
    pattern = _key_pattern(version)
    wide = _wide_keys(version)
    by_suffix: dict[str, dict[str, Sequence[str]]] = {}
    for key, values in params.items():
        match = pattern.match(key)
        if match:
            by_suffix.setdefault(match.group(2) or "", {})[match.group(1)] = values
        elif key not in wide:
            raise bad_request(f"unknown query parameter {key[:64]!r}")
    if len(by_suffix) > MAX_GROUPS:
        raise bad_request(f"{len(by_suffix)} request groups, more than {MAX_GROUPS}")
    if not version.at_least(GRANULAR) and "resources" not in by_suffix.get("", {}):
        raise bad_request("resources is required")

    groups = tuple(_parse_group(suffix, keys, version) for suffix, keys in by_suffix.items())
    wide_request = _parse_wide(params, version)
    _check_groups(groups, wide_request.same_subtrees, version)
    numbered = [group for group in groups if group.same_provider]
    if len(numbered) > 1 and wide_request.group_policy is None:
        raise bad_request("group_policy is required with several suffixed groups")
    return CandidatesRequest(
        groups=tuple(sorted(groups, key=lambda g: g.suffix)),
        limit=wide_request.limit,
        group_policy=wide_request.group_policy,
        root_traits=wide_request.root_traits,
        same_subtrees=wide_request.same_subtrees,
    )


def _parse_group(
    suffix: str, keys: Mapping[str, Sequence[str]], version: Microversion
) -> RequestGroup:
    resources: dict[str, int] = {}
    if "resources" in keys:
        # Placement reads a repeated resources key as its last value; allot refuses the repeat.
        resources = parse_resources(_single(keys["resources"], "resources" + suffix))
    traits = parse_required_values(keys.get("required", ()), version)
    aggregates = parse_member_of_values(keys.get("member_of", ()), version)
    in_tree = None
    if "in_tree" in keys:
        in_tree = parse_in_tree(_single(keys["in_tree"], "in_tree" + suffix))
    return RequestGroup(suffix, resources, traits, aggregates, in_tree)


@dataclass(frozen=True)
class _Wide:
    limit: int | None
    group_policy: str | None
    root_traits: TraitQuery
    same_subtrees: tuple[frozenset[str], ...]


def _parse_wide(params: Mapping[str, Sequence[str]], version: Microversion) -> _Wide:
    limit = None
    if "limit" in params:
        # Like Placement, a repeated limit or group_policy means its first value.
        limit = parse_limit(params["limit"][0])
    group_policy = None
    if "group_policy" in params:
        group_policy = params["group_policy"][0]
        if group_policy not in GROUP_POLICIES:
            raise bad_request("group_policy is neither none nor isolate")
    root_traits = TraitQuery()
    if "root_required" in params:
        root_traits = parse_required(
            _single(params["root_required"], "root_required"), version, allow_any_of=False
        )
        if root_traits.conflicts():
            raise bad_request(
                "a trait both required and forbidden in root_required", QUERY_BAD_VALUE
            )
    same_subtrees = []
    for value in params.get("same_subtree", ()):
        suffixes = frozenset(part.strip() for part in value.split(","))
        if "" in suffixes:
            raise bad_request("empty suffix in same_subtree", QUERY_BAD_VALUE)
        same_subtrees.append(suffixes)
    return _Wide(limit, group_policy, root_traits, tuple(same_subtrees))


def _check_groups(
    groups: Iterable[RequestGroup],
    same_subtrees: tuple[frozenset[str], ...],
    version: Microversion,
) -> None:
    groups = list(groups)
    if version.at_least(SAME_SUBTREE):
        resourceless = [group.suffix for group in groups if not group.resources]
        if len(resourceless) == len(groups):
            raise bad_request("no resources in any request group", QUERY_MISSING_VALUE)
        named = set().union(*same_subtrees) if same_subtrees else set()
        if any(suffix not in named for suffix in resourceless):
            raise bad_request("a resourceless group is not in same_subtree", QUERY_BAD_VALUE)
        known = {group.suffix for group in groups}
        if named - known:
            raise bad_request("same_subtree names an unknown group", QUERY_BAD_VALUE)
    else:
        if any(group.traits and not group.resources for group in groups):
            raise bad_request("required without resources in a request group")
        if any(group.aggregates and not group.resources for group in groups):
            raise bad_request("member_of without resources in a request group")
        if not groups or not all(group.resources for group in groups):
            raise bad_request("every request group needs resources")
    if version.at_least(FORBIDDEN_TRAITS):
        for group in groups:
            if group.traits.conflicts():
                raise bad_request(f"required{group.suffix} both requires and forbids a trait")


__all__ = [
    "AggregateQuery",
    "CandidatesRequest",
    "RequestGroup",
    "TraitQuery",
    "parse_candidates_request",
    "parse_in_tree",
    "parse_limit",
    "parse_member_of",
    "parse_member_of_values",
    "parse_required",
    "parse_required_values",
    "parse_resources",
]
