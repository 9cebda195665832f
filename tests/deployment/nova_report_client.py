"""Nova's own placement client against allot: run by the Nova venv's Python, not by pytest.

Unchanged `nova.scheduler.client.report.SchedulerReportClient`, given a keystoneauth adapter
from a password session (a service user with the `service` role), which finds allot through
the Keystone catalog. It does what a compute node, the scheduler and the conductor do, and
prints what Placement (here allot) answered at each step as one JSON document on stdout; the
test (test_nova_client.py) checks every value.

Environment: OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from typing import Any

import nova.conf
from keystoneauth1 import adapter, session
from keystoneauth1.identity import v3
from nova import context as nova_context
from nova import objects
from nova.scheduler import utils as scheduler_utils
from nova.scheduler.client.report import SchedulerReportClient

CONF = nova.conf.CONF


def inventory(total: int) -> dict[str, Any]:
    return {
        "total": total,
        "reserved": 0,
        "min_unit": 1,
        "max_unit": total,
        "step_size": 1,
        "allocation_ratio": 1.0,
    }


def placement_adapter() -> adapter.Adapter:
    auth = v3.Password(
        auth_url=os.environ["OS_AUTH_URL"],
        username=os.environ["OS_USERNAME"],
        password=os.environ["OS_PASSWORD"],
        project_name=os.environ["OS_PROJECT_NAME"],
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return adapter.Adapter(
        session.Session(auth=auth),
        service_type="placement",
        interface="public",
        region_name="RegionOne",
    )


def main() -> None:
    CONF([], project="nova", default_config_files=[])
    objects.register_all()
    client = SchedulerReportClient(adapter=placement_adapter())
    ctx = nova_context.get_admin_context()
    seen: dict[str, Any] = {}

    def get(url: str, version: str = "1.39") -> Any:
        response = client.get(url, version=version)
        assert response.status_code == 200, (url, response.status_code, response.text)
        return response.json()

    # A compute node with two NUMA cells, an FPGA on the node itself, in an aggregate with a
    # sharing disk pool: what the libvirt driver's update_provider_tree reports.
    node, numa0, numa1, disk = (str(uuid.uuid4()) for _ in range(4))
    aggregate = str(uuid.uuid4())
    client.get_provider_tree_and_ensure_root(ctx, disk, name="shared-disk")
    tree = client.get_provider_tree_and_ensure_root(ctx, node, name="compute-1")
    tree.new_child("compute-1_NUMA0", node, uuid=numa0)
    tree.new_child("compute-1_NUMA1", node, uuid=numa1)
    tree.update_inventory(node, {"CUSTOM_FPGA": inventory(2)})
    for cell in (numa0, numa1):
        tree.update_inventory(cell, {"VCPU": inventory(8), "MEMORY_MB": inventory(4096)})
    tree.update_traits(numa0, ["HW_CPU_X86_AVX2"])
    tree.update_aggregates(node, [aggregate])
    tree.update_inventory(disk, {"DISK_GB": inventory(100)})
    tree.update_traits(disk, ["MISC_SHARES_VIA_AGGREGATE"])
    tree.update_aggregates(disk, [aggregate])
    client.update_from_provider_tree(ctx, tree)

    providers = get(f"/resource_providers?in_tree={node}")["resource_providers"]
    seen["ids"] = {"node": node, "numa0": numa0, "numa1": numa1, "disk": disk}
    seen["aggregate"] = aggregate
    seen["tree"] = sorted(
        (p["name"], p["parent_provider_uuid"], p["root_provider_uuid"]) for p in providers
    )
    seen["inventories"] = {
        name: {
            rc: inv["total"]
            for rc, inv in get(f"/resource_providers/{rp}/inventories")["inventories"].items()
        }
        for name, rp in seen["ids"].items()
    }
    seen["traits"] = {
        name: sorted(get(f"/resource_providers/{rp}/traits")["traits"])
        for name, rp in (("numa0", numa0), ("disk", disk))
    }
    seen["aggregates"] = {
        name: get(f"/resource_providers/{rp}/aggregates")["aggregates"]
        for name, rp in (("node", node), ("disk", disk))
    }

    # The scheduler: the disk from the pool and an FPGA anywhere in the tree, and a granular
    # group (a NUMA cell with AVX2) for the CPUs and memory.
    cell = objects.RequestGroup(
        use_same_provider=True,
        requester_id="cell",
        resources={"VCPU": 2, "MEMORY_MB": 1024},
        required_traits={"HW_CPU_X86_AVX2"},
    )
    params = objects.RequestLevelParams(root_required=set(), root_forbidden=set(), same_subtree=[])
    request = scheduler_utils.ResourceRequest.from_request_groups([cell], params, "isolate")
    request.get_request_group(None).resources = {"DISK_GB": 10, "CUSTOM_FPGA": 1}
    candidates, summaries, version = client.get_allocation_candidates(ctx, request)
    seen["candidates"] = [c["allocations"] for c in candidates]
    seen["candidate_version"] = version
    seen["summarised"] = sorted(summaries)

    # The conductor claims the one candidate for an instance.
    instance, migration = str(uuid.uuid4()), str(uuid.uuid4())
    project, user = uuid.uuid4().hex, uuid.uuid4().hex
    seen["project"], seen["user"] = project, user
    seen["claimed"] = client.claim_resources(ctx, instance, candidates[0], project, user, version)
    seen["instance_allocations"] = client.get_allocs_for_consumer(ctx, instance)
    seen["quota_usages"] = client.get_usages_counts_for_quota(ctx, project, user)

    # A cold migration: the instance's allocations move to the migration record.
    seen["moved"] = client.move_allocations(ctx, instance, migration)
    seen["after_move"] = {
        "instance": client.get_allocs_for_consumer(ctx, instance)["allocations"],
        "migration": client.get_allocs_for_consumer(ctx, migration)["allocations"],
    }
    seen["moved_back"] = client.move_allocations(ctx, migration, instance)

    # A reshape: the FPGA moves from the node to a child of its own, allocations with it. The
    # claims changed the providers' generations since the tree was cached: the compute node
    # starts from placement's current tree, as it does on restart (and after a conflict).
    client.clear_provider_cache()
    tree = client.get_provider_tree_and_ensure_root(ctx, node, name="compute-1")
    fpga = str(uuid.uuid4())
    seen["ids"]["fpga"] = fpga
    tree.new_child("compute-1_FPGA0", node, uuid=fpga)
    tree.update_inventory(node, {})
    tree.update_inventory(fpga, {"CUSTOM_FPGA": inventory(2)})
    allocations = copy.deepcopy(client.get_allocations_for_provider_tree(ctx, "compute-1"))
    for record in allocations.values():
        held = record["allocations"].pop(node, None)
        if held:
            record["allocations"][fpga] = held
    client.update_from_provider_tree(ctx, tree, allocations=allocations)
    seen["reshaped"] = {
        "node": get(f"/resource_providers/{node}/inventories")["inventories"],
        "fpga": get(f"/resource_providers/{fpga}/inventories")["inventories"],
        "fpga_usages": get(f"/resource_providers/{fpga}/usages")["usages"],
        "instance": client.get_allocs_for_consumer(ctx, instance)["allocations"],
    }

    # The instance is deleted.
    seen["deleted"] = client.delete_allocation_for_instance(ctx, instance)
    seen["after_delete"] = client.get_allocs_for_consumer(ctx, instance)["allocations"]
    seen["quota_after_delete"] = client.get_usages_counts_for_quota(ctx, project, user)
    print(json.dumps(seen, default=sorted))


if __name__ == "__main__":
    main()
