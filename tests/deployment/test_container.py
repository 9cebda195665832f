"""allot's image, built from its Dockerfile and run the way production runs it (Podman).

The base is built from Debian's packages and given to the Dockerfile as PYTHON_IMAGE (no
image registry is reachable here; the Dockerfile's default stays the official image). The
containers share the host's network, where the test PostgreSQL listens, or a Podman network of
the test's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL, TEST_SECRET, mint
from tests.deployment import containers as c
from tests.deployment.topology import free_port, own_database

pytestmark = pytest.mark.slow

ADMIN = mint(roles=["admin"], project="container-project", user="operator")
HARDENED = [
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
]


@pytest.fixture(scope="module")
def image() -> str:
    if not c.podman_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs podman and runc (.ci/run installs them)")
        pytest.skip("needs podman and runc (Debian packages), as .ci/run installs them")
    c.build_image()
    return c.IMAGE


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("needs PostgreSQL (ALLOT_TEST_DATABASE_URL; CI sets it)")
    with own_database(PG_URL, "container") as url:
        yield url


@pytest.fixture(scope="module")
def migrated(image: str, database: str) -> str:
    code, out = _one_shot("--network", "host", *_settings(database), image, "db", "upgrade")
    assert code == 0, out
    return database


def _settings(database: str, **more: str) -> list[str]:
    return c.host_env(
        ALLOT_DATABASE_URL=database,
        ALLOT_AUTH_JWT_SECRET=TEST_SECRET,
        ALLOT_RATE_LIMIT="off",
        ALLOT_RATE_LIMIT_ANON="off",
        **more,
    )


def _serve(port: int) -> list[str]:
    return ["serve", "--host", "127.0.0.1", "--port", str(port)]


def _one_shot(*args: str) -> tuple[int, str]:
    result = c.podman("run", "--rm", *c.RUN_LIMITS, *args, check=False, timeout=120)
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("time=")]
    return result.returncode, result.stdout + "\n".join(lines)


def test_the_final_stage_is_unprivileged_and_holds_no_tools_source_or_secret(image: str) -> None:
    config = json.loads(c.podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["allot"]
    assert not any("SECRET" in e or "PASSWORD" in e for e in config.get("Env", []))
    history = c.podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert TEST_SECRET not in history
    assert not re.search(r"ALLOT_AUTH_JWT_SECRET=\S", history)
    code, out = _one_shot(
        "--entrypoint",
        "sh",
        image,
        "-c",
        "id -u; python -m pip --version 2>&1 | head -1; "
        "command -v pip pip3 gcc cc make || true; ls /src 2>&1; ls -A /srv/allot; "
        "find / -xdev -name 'pip-*.whl' -o -xdev -name 'pyproject.toml' 2>/dev/null | head -3",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "10001"
    assert "No module named pip" in lines[1]
    assert "No such file or directory" in lines[2]  # nothing else was found before /src
    assert lines[3:] == ["migrations", "var"]


def test_without_a_signing_key_it_refuses_to_start_naming_the_setting(image: str) -> None:
    code, out = _one_shot(image)
    assert code == 2
    assert "allot: configuration error: ALLOT_ENV=production needs ALLOT_AUTH_JWT_SECRET" in out
    assert "Traceback" not in out


def test_the_migration_runs_as_a_one_shot_container_twice(image: str, database: str) -> None:
    for _ in range(2):
        code, out = _one_shot("--network", "host", *_settings(database), image, "db", "upgrade")
        assert (code, out.splitlines()[0]) == (0, "database at head"), out


# The default command's port, which the image's HEALTHCHECK probes.
DEFAULT_PORT = 8000


@pytest.fixture(scope="module")
def served(image: str, migrated: str) -> Iterator[str]:
    """The default command, hardened: read-only root (only /tmp a tmpfs), no capabilities,
    no new privileges; two workers (the image's ALLOT_WORKERS)."""
    with socket.socket() as probe:
        # As the server binds: connections of an earlier run waiting out TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            pytest.fail(f"port {DEFAULT_PORT} is taken: the default command serves there")
    with c.container(
        *HARDENED, "--tmpfs", "/tmp", *_settings(migrated), image, name="allot-test-served"
    ) as name:
        base = f"http://127.0.0.1:{DEFAULT_PORT}"
        c.wait_ready(base, name)
        yield base


def test_the_healthcheck_reports_healthy(served: str) -> None:
    result = c.podman("healthcheck", "run", "allot-test-served", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_claim_made_through_the_container_reads_back(served: str) -> None:
    headers = {"x-auth-token": ADMIN, "openstack-api-version": "placement latest"}
    with httpx.Client(base_url=served, headers=headers) as client:
        rp, consumer = str(uuid.uuid4()), str(uuid.uuid4())
        assert client.post("/resource_providers", json={"name": rp, "uuid": rp}).is_success
        inventory = {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}}
        assert client.put(f"/resource_providers/{rp}/inventories", json=inventory).is_success
        claim = {
            "allocations": {rp: {"resources": {"VCPU": 3}}},
            "project_id": "container-project",
            "user_id": "operator",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        }
        claimed = client.put(f"/allocations/{consumer}", json=claim)
        assert claimed.status_code == 204, claimed.text
        shown = client.get(f"/allocations/{consumer}").json()
        assert shown["allocations"][rp]["resources"] == {"VCPU": 3}
        assert client.get(f"/resource_providers/{rp}/usages").json()["usages"] == {"VCPU": 3}


def test_sigterm_under_load_answers_every_request_in_flight_and_exits_0(
    image: str, migrated: str
) -> None:
    """32 requests are in flight (their bodies half sent) when the container is told to stop:
    each is answered, none with a 5xx, then the container exits 0."""
    port = free_port()
    with c.container(
        *HARDENED, "--tmpfs", "/tmp", *_settings(migrated), image, *_serve(port), name="allot-term"
    ) as name:
        c.wait_ready(f"http://127.0.0.1:{port}", name)
        statuses = asyncio.run(_half_sent_requests_then_term(port, name, count=32))
        assert len(statuses) == 32
        assert all(s == 201 or s == 204 for s in statuses), statuses
        assert c.exit_code(name) == 0, c.logs(name)


async def _half_sent_requests_then_term(port: int, name: str, count: int) -> list[int]:
    async def one(i: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"name": f"CUSTOM_TERM_{i}"}).encode()
        writer.write(
            b"POST /resource_classes HTTP/1.1\r\nHost: allot\r\n"
            b"Content-Type: application/json\r\nOpenStack-API-Version: placement latest\r\n"
            + f"X-Auth-Token: {ADMIN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        await writer.drain()
        await stopping.wait()
        await asyncio.sleep(0.5)  # the server is shutting down, this request still open
        writer.write(body[5:])
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        return int(status_line.split()[1])

    stopping = asyncio.Event()
    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(1.0)  # every connection accepted and its request begun
    await asyncio.to_thread(c.podman, "kill", "--signal", "TERM", name)
    stopping.set()
    return list(await asyncio.gather(*tasks))


def test_it_serves_under_an_arbitrary_uid_in_group_0(image: str) -> None:
    """OpenShift's restricted policy: any uid, group 0; the embedded SQLite in var/."""
    # The root is read-only, so the SQLite file gets a volume of its own, as a pod's would;
    # it belongs to group 0, as OpenShift's do.
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o770)  # noqa: S103 - group 0 writes it, as an OpenShift volume
        os.chown(tmp, 0, 0)
        with c.container(
            *HARDENED,
            "--tmpfs",
            "/tmp",
            "--user",
            "1000740000:0",
            "--volume",
            f"{tmp}:/srv/allot/var",
            *c.host_env(ALLOT_AUTH_JWT_SECRET=TEST_SECRET, ALLOT_RATE_LIMIT="off"),
            image,
            *_serve(port),
            name="allot-anyuid",
        ) as name:
            c.wait_ready(f"http://127.0.0.1:{port}", name)
            headers = {"x-auth-token": ADMIN, "openstack-api-version": "placement latest"}
            created = httpx.post(
                f"http://127.0.0.1:{port}/resource_classes",
                json={"name": "CUSTOM_ANY_UID"},
                headers=headers,
            )
            assert created.status_code == 201
            assert (Path(tmp) / "allot.db").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_read_only_root_without_a_writable_tmp_starts_or_refuses_clearly(
    image: str, migrated: str, workers: str
) -> None:
    """No tmpfs anywhere (a Deployment with readOnlyRootFilesystem and no emptyDir): one
    worker needs nothing writable and serves; two need a metrics directory, and say so."""
    port = free_port()
    args = [
        *HARDENED,
        "--read-only-tmpfs=false",
        *_settings(migrated, ALLOT_WORKERS=workers),
        image,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if workers == "1":
        with c.container(*args, name="allot-rootonly") as name:
            c.wait_ready(f"http://127.0.0.1:{port}", name)
        return
    code, out = _one_shot(*args)
    assert code == 2, out
    assert "allot: configuration error: PROMETHEUS_MULTIPROC_DIR:" in out
    assert "emptyDir or tmpfs" in out
    assert "Traceback" not in out


# GET /traits eight times, of the named containers in turn: the statuses, in order.
_ASK_IN_TURN = """
import sys, urllib.error, urllib.request
token, *hosts = sys.argv[1:]
headers = {"x-auth-token": token, "openstack-api-version": "placement latest"}
codes = []
for i in range(8):
    url = f"http://{hosts[i % len(hosts)]}:8000/traits"
    try:
        codes.append(urllib.request.urlopen(urllib.request.Request(url, headers=headers)).status)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
print(codes)
"""


def test_two_api_containers_on_one_podman_network_share_the_redis_rate_limits(
    image: str,
) -> None:
    """Compose's topology in small: Redis and two API containers on a network of their own,
    found by name through the engine's DNS; one budget of six requests for both."""
    c.ensure_services_image()
    net = f"allot-test-{uuid.uuid4().hex[:8]}"
    api = [
        *("--network", net, "--read-only", "--tmpfs", "/tmp"),
        *("--tmpfs", "/srv/allot/var", "--user", "10001:0"),
        *c.host_env(
            ALLOT_AUTH_JWT_SECRET=TEST_SECRET,
            ALLOT_WORKERS="1",
            ALLOT_RATE_LIMIT="6/minute",
            ALLOT_RATE_LIMIT_STORAGE="redis://redis:6379/0",
        ),
        image,
    ]
    with (
        c.network(net),
        c.container(
            *("--network", net, "--network-alias", "redis", c.SERVICES_IMAGE),
            # All of its own network namespace's interfaces: the test network's only.
            *("redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""),  # noqa: S104
            name=f"{net}-redis",
        ) as redis,
        c.container(*api, name=f"{net}-api-1") as one,
        c.container(*api, name=f"{net}-api-2") as two,
    ):
        c.wait_healthy(one)
        c.wait_healthy(two)
        # Asked from inside the network, of each container in turn.
        out = c.podman("exec", redis, "python3", "-c", _ASK_IN_TURN, ADMIN, one, two).stdout
        # The seventh and eighth are refused, whichever container they reach.
        assert out.strip() == str([200] * 6 + [429] * 2), out


def test_the_compose_proxy_reaches_every_api_replica_under_podman(
    image: str, tmp_path: Path
) -> None:
    """docker-compose.yml's proxy (its own start script and nginx template, as the file has
    them) on a Podman network: it resolves `api` through aardvark-dns, spreads requests over
    every replica across several re-resolutions, and finds a replica added later."""
    from tests.deployment.test_compose import _compose, _interpolate

    c.ensure_services_image()
    configs = _interpolate(_compose()["configs"], {})
    start, template = tmp_path / "allot-proxy.sh", tmp_path / "allot.conf.template"
    start.write_text(configs["proxy-start"]["content"])
    template.write_text(configs["nginx"]["content"])
    net = f"allot-test-{uuid.uuid4().hex[:8]}"

    def replica(number: int) -> contextlib.AbstractContextManager[str]:
        return c.container(
            *("--network", net, "--network-alias", "api", "--read-only", "--tmpfs", "/tmp"),
            # Each replica's own embedded database, in a tmpfs its group (0) may write.
            *("--tmpfs", "/srv/allot/var", "--user", "10001:0"),
            *c.host_env(
                ALLOT_AUTH_JWT_SECRET=TEST_SECRET, ALLOT_WORKERS="1", ALLOT_LOG_LEVEL="INFO"
            ),
            image,
            name=f"{net}-api-{number}",
        )

    def served_by(names: list[str], seconds: float) -> dict[str, int]:
        probe = (
            "import time, urllib.request\n"
            f"end = time.time() + {seconds}\n"
            "statuses = []\n"
            "while time.time() < end:\n"
            "    statuses.append(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status)\n"
            "    time.sleep(0.02)\n"
            "print(sorted(set(statuses)))\n"
        )
        out = c.podman("exec", f"{net}-proxy", "python3", "-c", probe, timeout=60).stdout
        assert out.strip() == "[200]", out
        return {name: c.logs(name).count('"route": "/healthz"') for name in names}

    with c.network(net), replica(1) as one, replica(2) as two:
        c.wait_healthy(one)
        c.wait_healthy(two)
        with c.container(
            *("--network", net, "--entrypoint", '["/bin/sh", "/etc/nginx/allot-proxy.sh"]'),
            *("--volume", f"{start}:/etc/nginx/allot-proxy.sh:ro"),
            *("--volume", f"{template}:/etc/nginx/allot.conf.template:ro"),
            c.SERVICES_IMAGE,
            name=f"{net}-proxy",
        ):
            # 12 s: the proxy resolves `api` again every 5 s (valid=5s).
            counts = served_by([one, two], seconds=12)
            assert all(n > 0 for n in counts.values()), counts
            with replica(3) as three:
                c.wait_healthy(three)
                time.sleep(6)  # past the proxy's cached answer
                assert served_by([three], seconds=3)[three] > 0
