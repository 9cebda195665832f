"""The OpenStack command-line client works against allot unchanged.

`python-openstackclient` with the `osc-placement` plugin, from PyPI, in a virtualenv of its
own outside the repository (made on first use; `ALLOT_OSC_VENV` chooses where). It talks to a
running `allot serve` with token + endpoint authentication: the token is an allot JWT, which
the client sends as X-Auth-Token, exactly as it would send a Keystone token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, PG_URL, TEST_SECRET, mint
from tests.deployment.topology import Process, free_port, migrate, own_database

pytestmark = pytest.mark.slow

OSC_PACKAGES = ["python-openstackclient>=7", "osc-placement>=4"]
OSC_VENV = Path(os.environ.get("ALLOT_OSC_VENV", Path(tempfile.gettempdir()) / "allot-osc-venv"))


@pytest.fixture(scope="module")
def openstack() -> Path:
    """The `openstack` command, installing it beside (never inside) the project if missing."""
    binary = OSC_VENV / "bin" / "openstack"
    marker = OSC_VENV / ".allot-complete"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(OSC_VENV)], check=True)
        subprocess.run(
            [str(OSC_VENV / "bin" / "pip"), "install", "--quiet", *OSC_PACKAGES],
            check=True,
            timeout=900,
        )
        marker.write_text("\n".join(OSC_PACKAGES))
    assert binary.exists()
    return binary


# Every call of the client costs seconds of start-up: one backend, the production one if there.
@pytest.fixture(scope="module", params=BACKENDS[-1:])
def allot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A running `allot serve` (one worker), on PostgreSQL when configured, else SQLite."""
    workdir = tmp_path_factory.mktemp(f"osc-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(ALLOT_ENV="production", ALLOT_AUTH_JWT_SECRET=TEST_SECRET, ALLOT_RATE_LIMIT="off")
    if request.param == "sqlite":
        env["ALLOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'allot.db'}"
        yield from _serve(env, workdir)
        return
    assert PG_URL
    with own_database(PG_URL, "osc") as database_url:
        env["ALLOT_DATABASE_URL"] = database_url
        migrate(env)
        yield from _serve(env, workdir)


def _serve(env: dict[str, str], workdir: Path) -> Iterator[str]:
    server = Process("osc", free_port(), env, workdir / "serve.log", workers=1)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


class Osc:
    def __init__(self, binary: Path, endpoint: str, token: str) -> None:
        self.binary = binary
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
            "OS_AUTH_TYPE": "admin_token",
            "OS_TOKEN": token,
            "OS_ENDPOINT": endpoint,
            "OS_PLACEMENT_API_VERSION": "1.39",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert result.returncode == 0, f"openstack {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-f", "json").stdout)


def test_openstack_client_manages_providers_inventories_traits_and_allocations(
    openstack: Path, allot: str
) -> None:
    token = mint(roles=["admin"], project="admin-project", user="operator")
    osc = Osc(openstack, allot, token)

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
    osc = Osc(openstack, allot, "not-a-token")
    result = osc.run("resource", "provider", "list", check=False)
    assert result.returncode != 0
    assert "401" in result.stderr
