"""Podman, as the container tests use it: a base image built from Debian's packages (no image
registry is reachable here), allot's image built from the Dockerfile on top of it, and
containers run the way production runs them.

Podman's default runtime (crun) cannot start containers on these machines and a process
here cannot raise its limits, so every call names runc and fixed limits.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/allot-base:bookworm"
IMAGE = "localhost/allot:test"
RUN_LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
# What the Dockerfile's base has that a Debian minbase lacks: Python and its venv module.
_BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"


def podman_available() -> bool:
    return shutil.which("podman") is not None and shutil.which("runc") is not None


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}... failed:\n{result.stderr[-3000:]}")
    return result


def _debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def ensure_base_image() -> None:
    """The Dockerfile's PYTHON_IMAGE, built once per machine with debootstrap (about a minute)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="allot-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [
                *("debootstrap", "--variant=minbase", f"--include={_BASE_PACKAGES}"),
                *("bookworm", str(rootfs), _debian_mirror()),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        # pip inside a build reaches the registry as the host's does; no package cache kept.
        for name in ("ssl/certs/ca-certificates.crt", "pip.conf"):
            if Path("/etc", name).exists():
                shutil.copy(Path("/etc", name), rootfs / "etc" / name)
        for cache in rootfs.glob("var/cache/apt/archives/*.deb"):
            cache.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True, timeout=300
        )
        tar.wait()


# The Compose file's other services, from Debian's packages on the same base (no registry
# here for the official nginx and redis images): nginx for the proxy (the Compose file
# brings its own start script) and redis-server for the shared rate limits.
SERVICES_IMAGE = "localhost/allot-test-services:bookworm"
_SERVICES_CONTAINERFILE = f"""FROM {BASE_IMAGE}
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends nginx redis-server \\
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*
"""


def ensure_services_image() -> None:
    ensure_base_image()
    if podman("image", "exists", SERVICES_IMAGE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Containerfile").write_text(_SERVICES_CONTAINERFILE)
        podman(
            *("build", "--isolation", "chroot", "--network", "host", *RUN_LIMITS),
            *("--tag", SERVICES_IMAGE, tmp),
            timeout=600,
        )


def build_image() -> None:
    """allot's image from its Dockerfile, as an operator builds it (layers cached by Podman)."""
    ensure_base_image()
    podman(
        "build",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--format",
        "docker",  # keeps the HEALTHCHECK
        *RUN_LIMITS,
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        "--tag",
        IMAGE,
        str(ROOT),
        timeout=900,
    )


def run_args(*extra: str) -> list[str]:
    """`podman run` with the limits this machine needs, detached."""
    return ["run", "--detach", *RUN_LIMITS, *extra]


@contextlib.contextmanager
def container(*args: str, name: str) -> Iterator[str]:
    """A detached container, removed when done (its logs first, on failure)."""
    podman("rm", "--force", name, check=False)
    podman(*run_args("--name", name, *args))
    try:
        yield name
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return (result.stdout + result.stderr)[-4000:]


def wait_healthy(name: str, timeout: float = 60) -> None:
    """Until the image's own HEALTHCHECK passes (for a container the host cannot reach)."""
    deadline = time.monotonic() + timeout
    while podman("healthcheck", "run", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{name} never became healthy:\n{logs(name)}"
        time.sleep(0.3)


@contextlib.contextmanager
def network(name: str) -> Iterator[str]:
    """A bridge network of the test's own, with the engine's DNS (aardvark-dns)."""
    podman("network", "rm", "--force", name, check=False)
    podman("network", "create", name)
    try:
        yield name
    finally:
        podman("network", "rm", "--force", name, check=False)


def wait_ready(base: str, name: str, timeout: float = 60) -> float:
    """Seconds until GET /readyz answers 200; fails with the container's log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout
        assert state.strip() in ("running", "created", "configured"), logs(name)
        time.sleep(0.1)
    raise AssertionError(f"{name} never became ready:\n{logs(name)}")


def host_env(**values: str) -> list[str]:
    """`--env` arguments (never a secret in the image, only in the run)."""
    return [item for key, value in values.items() for item in ("--env", f"{key}={value}")]


def exit_code(name: str, timeout: float = 60) -> int:
    result = podman("wait", name, timeout=timeout)
    return int(result.stdout.strip().splitlines()[-1])
