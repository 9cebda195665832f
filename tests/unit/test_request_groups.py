"""Parsing of resources / required / member_of / in_tree and of whole request groups."""

from __future__ import annotations

import pytest

from app.errors import (
    QUERY_BAD_VALUE,
    QUERY_DUPLICATE_KEY,
    QUERY_MISSING_VALUE,
    UNDEFINED,
    ApiError,
)
from app.microversion import Microversion
from app.services.request_groups import (
    AggregateQuery,
    TraitQuery,
    parse_candidates_request,
    parse_in_tree,
    parse_limit,
    parse_member_of,
    parse_member_of_values,
    parse_required,
    parse_required_values,
    parse_resources,
)

A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"


def v(minor: int) -> Microversion:
    return Microversion(1, minor)


def refused(code: str = UNDEFINED) -> pytest.RaisesExc[ApiError]:
    return pytest.raises(ApiError, check=lambda e: e.status == 400 and e.code == code)


# --- resources ---------------------------------------------------------------------------


def test_resources_are_class_amount_pairs() -> None:
    assert parse_resources("VCPU:1,MEMORY_MB:512") == {"VCPU": 1, "MEMORY_MB": 512}


@pytest.mark.parametrize("value", ["", " ", "VCPU", "VCPU:1:2", "VCPU:x", "VCPU:0", "VCPU:-1", ","])
def test_malformed_resources_are_refused(value: str) -> None:
    with refused():
        parse_resources(value)


# --- required ----------------------------------------------------------------------------


def test_required_traits_are_all_of() -> None:
    q = parse_required("HW_CPU_X86_AVX, CUSTOM_GOLD", v(17))
    assert q == TraitQuery(required=(frozenset({"HW_CPU_X86_AVX"}), frozenset({"CUSTOM_GOLD"})))
    assert q.matches({"HW_CPU_X86_AVX", "CUSTOM_GOLD", "X"})
    assert not q.matches({"HW_CPU_X86_AVX"})


def test_forbidden_traits_from_1_22() -> None:
    q = parse_required("CUSTOM_A,!CUSTOM_B", v(22))
    assert q.forbidden == {"CUSTOM_B"}
    assert not q.matches({"CUSTOM_A", "CUSTOM_B"})
    with refused():
        parse_required("CUSTOM_A,!CUSTOM_B", v(21))


def test_many_bangs_mean_one_forbidden_trait() -> None:
    assert parse_required("!!CUSTOM_B", v(22)).forbidden == {"CUSTOM_B"}


def test_any_of_traits_from_1_39() -> None:
    q = parse_required("in:CUSTOM_A,CUSTOM_B", v(39))
    assert q.required == (frozenset({"CUSTOM_A", "CUSTOM_B"}),)
    assert q.matches({"CUSTOM_B"})
    with refused():
        parse_required("in:CUSTOM_A,CUSTOM_B", v(38))
    with refused():
        parse_required("in:CUSTOM_A,!CUSTOM_B", v(39))
    with refused():
        parse_required("in:CUSTOM_A,", v(39))


@pytest.mark.parametrize("value", ["", "CUSTOM_A,", ",CUSTOM_A", "!", "CUSTOM_A,!"])
def test_empty_trait_names_are_refused(value: str) -> None:
    with refused():
        parse_required(value, v(39))


def test_repeated_required_adds_up_from_1_39_and_last_wins_before() -> None:
    values = ["CUSTOM_A", "in:CUSTOM_B,CUSTOM_C"]
    assert parse_required_values(values, v(39)).names() == {"CUSTOM_A", "CUSTOM_B", "CUSTOM_C"}
    assert parse_required_values(["CUSTOM_A", "CUSTOM_B"], v(38)).names() == {"CUSTOM_B"}


# --- member_of ---------------------------------------------------------------------------


def test_member_of_forms() -> None:
    assert parse_member_of(A, v(21)) == AggregateQuery(required=(frozenset({A}),))
    assert parse_member_of(f"in:{A},{B}", v(21)).required == (frozenset({A, B}),)
    assert parse_member_of(f"!{A}", v(32)).forbidden == {A}
    assert parse_member_of(f"!in:{A},{B}", v(32)).forbidden == {A, B}


def test_member_of_uuids_are_canonical() -> None:
    assert parse_member_of(A.replace("-", "").upper(), v(21)).required == (frozenset({A}),)


@pytest.mark.parametrize("value", [f"{A},{B}", "not-a-uuid", f"in:{A},nope", "in:", f"!in:{A},"])
def test_malformed_member_of_is_refused(value: str) -> None:
    with refused():
        parse_member_of(value, v(39))


def test_forbidden_member_of_needs_1_32() -> None:
    with refused():
        parse_member_of(f"!{A}", v(31))


def test_repeated_member_of_needs_1_24() -> None:
    both = parse_member_of_values([A, B], v(24))
    assert both.required == (frozenset({A}), frozenset({B}))
    assert both.matches({A, B}) and not both.matches({A})
    with refused():
        parse_member_of_values([A, B], v(23))


# --- in_tree, limit ----------------------------------------------------------------------


def test_in_tree_is_a_uuid() -> None:
    assert parse_in_tree(A.upper()) == A
    with refused():
        parse_in_tree("nope")


@pytest.mark.parametrize("value", ["0", "-1", "x", "", "1.5"])
def test_limit_is_a_positive_integer(value: str) -> None:
    with refused():
        parse_limit(value)


# --- whole requests ----------------------------------------------------------------------


def req(minor: int, **params: str | list[str]) -> object:
    multi = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    return parse_candidates_request(multi, v(minor))


def test_unsuffixed_and_granular_groups() -> None:
    r = parse_candidates_request(
        {
            "resources": ["VCPU:1"],
            "resources1": ["SRIOV_NET_VF:1"],
            "required1": ["CUSTOM_PHYSNET_A"],
            "resources2": ["SRIOV_NET_VF:1"],
            "member_of2": [A],
            "group_policy": ["isolate"],
            "limit": ["5"],
        },
        v(25),
    )
    assert [g.suffix for g in r.groups] == ["", "1", "2"]
    assert not r.groups[0].same_provider and r.groups[1].same_provider
    assert r.limit == 5 and r.group_policy == "isolate"
    assert r.trait_names() == {"CUSTOM_PHYSNET_A"}
    assert r.resource_class_names() == {"VCPU", "SRIOV_NET_VF"}


def test_resources_required_before_1_25() -> None:
    with refused():
        req(10)
    with refused():
        req(24, required="CUSTOM_A")


def test_keys_appear_with_their_microversion() -> None:
    with refused():
        req(15, resources="VCPU:1", limit="1")
    with refused():
        req(16, resources="VCPU:1", required="CUSTOM_A")
    with refused():
        req(24, resources1="VCPU:1")
    with refused():
        req(30, resources="VCPU:1", in_tree=A)
    with refused():
        req(32, resources_X="VCPU:1")
    assert req(33, resources_X="VCPU:1")
    with refused():
        req(34, resources="VCPU:1", root_required="CUSTOM_A")
    with refused():
        req(35, resources="VCPU:1", same_subtree="_A")


def test_group_policy_needed_with_several_granular_groups() -> None:
    with refused():
        req(25, resources1="VCPU:1", resources2="VCPU:1")
    with refused():
        req(25, resources1="VCPU:1", resources2="VCPU:1", group_policy="bogus")
    assert req(25, resources1="VCPU:1", resources2="VCPU:1", group_policy="none")


def test_orphaned_groups_before_1_36() -> None:
    with refused():
        req(35, resources="VCPU:1", required1="CUSTOM_A")
    with refused():
        req(35, resources="VCPU:1", member_of1=A)
    with refused():
        req(35, resources="VCPU:1", in_tree1=A)


def test_resourceless_groups_from_1_36_must_be_in_same_subtree() -> None:
    ok = req(
        36, resources_A="VCPU:1", required_B="CUSTOM_A", same_subtree="_A,_B", group_policy="none"
    )
    assert ok.same_subtrees == (frozenset({"_A", "_B"}),)  # type: ignore[attr-defined]
    with refused(QUERY_BAD_VALUE):
        req(36, resources_A="VCPU:1", required_B="CUSTOM_A", group_policy="none")
    with refused(QUERY_MISSING_VALUE):
        req(36, required_B="CUSTOM_A", same_subtree="_B")
    with refused(QUERY_BAD_VALUE):
        req(36, resources_A="VCPU:1", same_subtree="_A,_C")
    with refused(QUERY_BAD_VALUE):
        req(36, resources_A="VCPU:1", same_subtree="_A,")


def test_required_and_forbidden_conflict() -> None:
    with refused():
        req(39, resources="VCPU:1", required=["CUSTOM_A", "!CUSTOM_A"])
    with refused():
        req(39, resources="VCPU:1", required=["in:CUSTOM_A,CUSTOM_B", "!CUSTOM_A,!CUSTOM_B"])
    # One of the any-of set is still possible.
    assert req(39, resources="VCPU:1", required=["in:CUSTOM_A,CUSTOM_B", "!CUSTOM_A"])


def test_root_required() -> None:
    r = req(35, resources="VCPU:1", root_required="CUSTOM_A,!CUSTOM_B")
    assert r.root_traits == TraitQuery((frozenset({"CUSTOM_A"}),), frozenset({"CUSTOM_B"}))  # type: ignore[attr-defined]
    with refused(QUERY_BAD_VALUE):
        req(35, resources="VCPU:1", root_required="CUSTOM_A,!CUSTOM_A")
    with refused(QUERY_DUPLICATE_KEY):
        req(35, resources="VCPU:1", root_required=["CUSTOM_A", "CUSTOM_B"])
    with refused():
        req(39, resources="VCPU:1", root_required="in:CUSTOM_A,CUSTOM_B")


def test_repeated_resources_and_in_tree_are_refused() -> None:
    with refused(QUERY_DUPLICATE_KEY):
        req(39, resources=["VCPU:1", "VCPU:2"])
    with refused(QUERY_DUPLICATE_KEY):
        req(39, resources="VCPU:1", in_tree=[A, B])


def test_repeated_limit_and_group_policy_mean_the_first() -> None:
    r = req(39, resources="VCPU:1", limit=["2", "1"], group_policy=["isolate", "none"])
    assert r.limit == 2 and r.group_policy == "isolate"  # type: ignore[attr-defined]


def test_unknown_keys_are_refused() -> None:
    with refused():
        req(39, resources="VCPU:1", bogus="1")
    with refused():
        req(39, resources="VCPU:1", **{"resources!": "VCPU:1"})
