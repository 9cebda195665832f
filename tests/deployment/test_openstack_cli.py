"""The OpenStack command-line client works against allot unchanged.

`python-openstackclient` with the `osc-placement` plugin, from PyPI, in a virtualenv of its
own outside the repository (tests/openstack_clients.py). Two ways in, as operators use it:
password authentication against a real Keystone, finding allot through the catalog; and token
+ endpoint, with an allot JWT sent as X-Auth-Token exactly as a Keystone token would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, mint
from tests.deployment.cloud import allot_in_catalog, allot_serving
from tests.keystone_server import Keystone
from tests.openstack_clients import openstack_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def openstack() -> Path:
    """The `openstack` command, installing it beside (never inside) the project if missing."""
    return openstack_cli()


# Every call of the client costs seconds of start-up: one backend, the production one if there.
@pytest.fixture(scope="module", params=BACKENDS[-1:])
def allot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A running `allot serve` (one worker), on PostgreSQL when configured, else SQLite."""
    with allot_serving(request.param, tmp_path_factory.mktemp(f"osc-{request.param}")) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def cloud(
    request: pytest.FixtureRequest,
    keystone: Keystone,
    keystone_settings: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Keystone]:
    """allot registered as `placement` in Keystone's catalog, on each database."""
    workdir = tmp_path_factory.mktemp(f"osc-cloud-{request.param}")
    with allot_in_catalog(keystone, keystone_settings, request.param, workdir):
        yield keystone


class Osc:
    def __init__(self, binary: Path, **auth: str) -> None:
        self.binary = binary
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
            **{f"OS_{key.upper()}": value for key, value in auth.items()},
            "OS_PLACEMENT_API_VERSION": "1.39",
        }

    @classmethod
    def with_token(cls, binary: Path, endpoint: str, token: str) -> Osc:
        return cls(binary, auth_type="admin_token", token=token, endpoint=endpoint)

    @classmethod
    def with_password(cls, binary: Path, keystone: Keystone, user: Any) -> Osc:
        return cls(
            binary,
            auth_type="password",
            auth_url=keystone.url,
            identity_api_version="3",
            username=user.name,
            password=user.password,
            project_name=user.project,
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
            interface="public",
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert result.returncode == 0, f"openstack {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-f", "json").stdout)


def test_an_operator_with_a_keystone_password_finds_allot_in_the_catalog(
    openstack: Path, cloud: Keystone
) -> None:
    operator = cloud.user("operator", f"ops-{uuid.uuid4().hex[:6]}", ["admin"])
    osc = Osc.with_password(openstack, cloud, operator)

    osc.run("resource", "class", "create", "CUSTOM_GPU_A100")
    shown = osc.json("resource", "class", "show", "CUSTOM_GPU_A100")
    assert shown["name"] == "CUSTOM_GPU_A100"
    assert "CUSTOM_GPU_A100" in [c["name"] for c in osc.json("resource", "class", "list")]

    provider = osc.json("resource", "provider", "create", "gpu-host-1")["uuid"]
    inventory = osc.json(
        "resource", "provider", "inventory", "set", provider,
        "--resource", "VCPU=16", "--resource", "CUSTOM_GPU_A100=4",
    )  # fmt: skip
    assert {row["resource_class"]: row["total"] for row in inventory} == {
        "VCPU": 16,
        "CUSTOM_GPU_A100": 4,
    }
    osc.run("resource", "provider", "trait", "set", provider, "--trait", "HW_CPU_X86_AVX2")
    traits = osc.json("resource", "provider", "trait", "list", provider)
    assert [t["name"] for t in traits] == ["HW_CPU_X86_AVX2"]

    aggregate = str(uuid.uuid4())
    generation = osc.json("resource", "provider", "show", provider)["generation"]
    osc.run(
        "resource", "provider", "aggregate", "set", provider,
        "--aggregate", aggregate, "--generation", str(generation),
    )  # fmt: skip
    aggregates = osc.json("resource", "provider", "aggregate", "list", provider)
    assert [a["uuid"] for a in aggregates] == [aggregate]

    consumer, project, user = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    osc.run(
        "resource", "provider", "allocation", "set", consumer,
        "--allocation", f"rp={provider},VCPU=4,CUSTOM_GPU_A100=1",
        "--project-id", project, "--user-id", user, "--consumer-type", "INSTANCE",
    )  # fmt: skip
    allocations = osc.json("resource", "provider", "allocation", "show", consumer)
    assert [(a["resource_provider"], a["resources"]) for a in allocations] == [
        (provider, {"VCPU": 4, "CUSTOM_GPU_A100": 1})
    ]
    usage = osc.json("resource", "provider", "usage", "show", provider)
    assert {u["resource_class"]: u["usage"] for u in usage} == {"VCPU": 4, "CUSTOM_GPU_A100": 1}
    # From 1.38 a project's usages come per consumer type (the client shows it in the first
    # column), with the number of consumers.
    totals = osc.json("resource", "usage", "show", project)
    assert {u["resource_class"]: u["usage"] for u in totals} == {
        "INSTANCE": {"VCPU": 4, "CUSTOM_GPU_A100": 1, "consumer_count": 1}
    }

    osc.run("resource", "provider", "allocation", "delete", consumer)
    osc.run("resource", "provider", "delete", provider)
    osc.run("resource", "class", "delete", "CUSTOM_GPU_A100")
    assert osc.json("resource", "provider", "list") == []


def test_a_keystone_user_without_a_role_allot_honours_is_refused(
    openstack: Path, cloud: Keystone
) -> None:
    member = cloud.user("member", f"proj-{uuid.uuid4().hex[:6]}", ["member"])
    result = Osc.with_password(openstack, cloud, member).run(
        "resource", "provider", "list", check=False
    )
    assert result.returncode != 0
    assert "403" in result.stderr


def test_openstack_client_manages_providers_inventories_traits_and_allocations(
    openstack: Path, allot: str
) -> None:
    token = mint(roles=["admin"], project="admin-project", user="operator")
    osc = Osc.with_token(openstack, allot, token)

    created = osc.json("resource", "provider", "create", "compute-1")
    provider = created["uuid"]
    listed = osc.json("resource", "provider", "list")
    assert [(p["uuid"], p["name"]) for p in listed] == [(provider, "compute-1")]

    inventory = osc.json(
        "resource", "provider", "inventory", "set", provider,
        "--resource", "VCPU=8", "--resource", "VCPU:allocation_ratio=2.0",
        "--resource", "MEMORY_MB=4096",
    )  # fmt: skip
    by_class = {row["resource_class"]: row for row in inventory}
    assert by_class["VCPU"]["total"] == 8 and by_class["VCPU"]["allocation_ratio"] == 2.0
    assert by_class["MEMORY_MB"]["total"] == 4096

    osc.run("trait", "create", "CUSTOM_FAST_DISK")
    traits = osc.json(
        "resource", "provider", "trait", "set", provider,
        "--trait", "CUSTOM_FAST_DISK", "--trait", "HW_CPU_X86_AVX2",
    )  # fmt: skip
    assert sorted(t["name"] for t in traits) == ["CUSTOM_FAST_DISK", "HW_CPU_X86_AVX2"]
    shown = osc.json("resource", "provider", "trait", "list", provider)
    assert sorted(t["name"] for t in shown) == ["CUSTOM_FAST_DISK", "HW_CPU_X86_AVX2"]

    consumer = str(uuid.uuid4())
    osc.run(
        "resource", "provider", "allocation", "set", consumer,
        "--allocation", f"rp={provider},VCPU=2,MEMORY_MB=512",
        "--project-id", str(uuid.uuid4()), "--user-id", str(uuid.uuid4()),
        "--consumer-type", "INSTANCE",
    )  # fmt: skip
    allocations = osc.json("resource", "provider", "allocation", "show", consumer)
    assert [(a["resource_provider"], a["resources"]) for a in allocations] == [
        (provider, {"VCPU": 2, "MEMORY_MB": 512})
    ]
    usage = osc.json("resource", "provider", "usage", "show", provider)
    assert {u["resource_class"]: u["usage"] for u in usage} == {"VCPU": 2, "MEMORY_MB": 512}

    osc.run("resource", "provider", "allocation", "delete", consumer)
    assert osc.json("resource", "provider", "allocation", "show", consumer) == []
    usage = osc.json("resource", "provider", "usage", "show", provider)
    assert {u["resource_class"]: u["usage"] for u in usage} == {"VCPU": 0, "MEMORY_MB": 0}

    osc.run("resource", "provider", "delete", provider)
    assert osc.json("resource", "provider", "list") == []


def test_openstack_client_is_refused_without_a_valid_token(openstack: Path, allot: str) -> None:
    osc = Osc.with_token(openstack, allot, "not-a-token")
    result = osc.run("resource", "provider", "list", check=False)
    assert result.returncode != 0
    assert "401" in result.stderr
