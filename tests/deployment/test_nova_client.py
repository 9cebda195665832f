"""Nova's placement client, unchanged, against allot found through the Keystone catalog.

`nova.scheduler.client.report.SchedulerReportClient` from the PyPI `nova` package (a venv of
its own outside the repository) runs nova_report_client.py as Nova's `service` user: a compute
node's tree, a sharing disk pool, allocation candidates, a claim, a migration, quota usages,
a reshape and a delete. Every value it saw is checked here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS
from tests.deployment.cloud import allot_in_catalog
from tests.openstack_clients import nova_python

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("nova_report_client.py")


@pytest.fixture(scope="module", params=BACKENDS)
def nova_saw(
    request: pytest.FixtureRequest,
    keystone: Any,
    keystone_settings: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """What Nova's report client saw, running against allot on each database."""
    python = nova_python()
    nova = keystone.user("nova", "service", ["service"])
    workdir = tmp_path_factory.mktemp(f"nova-{request.param}")
    with allot_in_catalog(keystone, keystone_settings, request.param, workdir):
        env = {
            "OS_AUTH_URL": keystone.url,
            "OS_USERNAME": nova.name,
            "OS_PASSWORD": nova.password,
            "OS_PROJECT_NAME": "service",
            "PATH": "/usr/bin:/bin",
        }
        run = subprocess.run(
            [str(python), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr[-4000:]
        yield json.loads(run.stdout.strip().splitlines()[-1])


def test_update_from_provider_tree_creates_the_numa_tree_and_the_sharing_pool(
    nova_saw: dict[str, Any],
) -> None:
    ids = nova_saw["ids"]
    node = ids["node"]
    assert nova_saw["tree"] == [
        ["compute-1", None, node],
        ["compute-1_NUMA0", node, node],
        ["compute-1_NUMA1", node, node],
    ]
    assert nova_saw["inventories"] == {
        "node": {"CUSTOM_FPGA": 2},
        "numa0": {"VCPU": 8, "MEMORY_MB": 4096},
        "numa1": {"VCPU": 8, "MEMORY_MB": 4096},
        "disk": {"DISK_GB": 100},
    }
    assert nova_saw["traits"] == {
        "numa0": ["HW_CPU_X86_AVX2"],
        "disk": ["MISC_SHARES_VIA_AGGREGATE"],
    }
    assert nova_saw["aggregates"] == {
        "node": [nova_saw["aggregate"]],
        "disk": [nova_saw["aggregate"]],
    }


def test_candidates_honour_the_trait_the_granular_group_and_the_sharing_pool(
    nova_saw: dict[str, Any],
) -> None:
    ids = nova_saw["ids"]
    assert nova_saw["candidate_version"] == "1.36"
    assert nova_saw["candidates"] == [
        {
            ids["node"]: {"resources": {"CUSTOM_FPGA": 1}},
            ids["numa0"]: {"resources": {"VCPU": 2, "MEMORY_MB": 1024}},
            ids["disk"]: {"resources": {"DISK_GB": 10}},
        }
    ]
    assert nova_saw["summarised"] == sorted([ids["node"], ids["numa0"], ids["numa1"], ids["disk"]])


def test_claim_usages_and_migration_move_the_instances_resources(
    nova_saw: dict[str, Any],
) -> None:
    ids = nova_saw["ids"]
    held = {
        ids["node"]: {"resources": {"CUSTOM_FPGA": 1}},
        ids["numa0"]: {"resources": {"VCPU": 2, "MEMORY_MB": 1024}},
        ids["disk"]: {"resources": {"DISK_GB": 10}},
    }
    assert nova_saw["claimed"] is True
    claimed = nova_saw["instance_allocations"]
    assert claimed["allocations"] == {
        rp: {**a, "generation": claimed["allocations"][rp]["generation"]} for rp, a in held.items()
    }
    assert (claimed["project_id"], claimed["user_id"]) == (nova_saw["project"], nova_saw["user"])
    counts = {"cores": 2, "ram": 1024}
    assert nova_saw["quota_usages"] == {"project": counts, "user": counts}

    assert nova_saw["moved"] is True
    moved = nova_saw["after_move"]
    assert moved["instance"] == {}
    assert {rp: a["resources"] for rp, a in moved["migration"].items()} == {
        rp: a["resources"] for rp, a in held.items()
    }
    assert nova_saw["moved_back"] is True


def test_a_reshape_moves_inventory_and_allocations_to_a_new_child(
    nova_saw: dict[str, Any],
) -> None:
    ids = nova_saw["ids"]
    reshaped = nova_saw["reshaped"]
    assert reshaped["node"] == {}
    assert reshaped["fpga"]["CUSTOM_FPGA"]["total"] == 2
    assert reshaped["fpga_usages"] == {"CUSTOM_FPGA": 1}
    assert {rp: a["resources"] for rp, a in reshaped["instance"].items()} == {
        ids["fpga"]: {"CUSTOM_FPGA": 1},
        ids["numa0"]: {"VCPU": 2, "MEMORY_MB": 1024},
        ids["disk"]: {"DISK_GB": 10},
    }


def test_deleting_the_instance_frees_everything(nova_saw: dict[str, Any]) -> None:
    assert nova_saw["deleted"] is True
    assert nova_saw["after_delete"] == {}
    zero = {"cores": 0, "ram": 0}
    assert nova_saw["quota_after_delete"] == {"project": zero, "user": zero}
