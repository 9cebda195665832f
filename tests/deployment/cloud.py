"""allot in an OpenStack cloud: a real `allot serve` validating Keystone tokens, registered in
Keystone's catalog as the `placement` service, the way an operator swaps it for Placement."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import PG_URL, TEST_SECRET
from tests.deployment.topology import Process, free_port, migrate, own_database


def allot_environment(**settings: Any) -> dict[str, str]:
    """This process's environment without its ALLOT_ settings, plus `settings` as ALLOT_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({f"ALLOT_{key.upper()}": str(value) for key, value in settings.items()})
    return env


@contextmanager
def allot_serving(backend: str, workdir: Path, **settings: Any) -> Iterator[str]:
    """A running `allot serve` (one worker) on a database of its own; its URL."""
    env = allot_environment(
        env="production", auth_jwt_secret=TEST_SECRET, rate_limit="off", **settings
    )
    if backend == "sqlite":
        env["ALLOT_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'allot.db'}"
        with _serving(env, workdir) as url:
            yield url
        return
    assert PG_URL
    with own_database(PG_URL, f"cloud{free_port()}") as database_url:
        env["ALLOT_DATABASE_URL"] = database_url
        migrate(env)
        with _serving(env, workdir) as url:
            yield url


@contextmanager
def _serving(env: dict[str, str], workdir: Path) -> Iterator[str]:
    server = Process("allot", free_port(), env, workdir / "serve.log", workers=1)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@contextmanager
def allot_in_catalog(
    keystone: Any, keystone_settings: dict[str, Any], backend: str, workdir: Path
) -> Iterator[str]:
    """allot with Placement's drop-in policy, validating Keystone tokens (JWTs too), listed in
    the catalog as `placement` (public and internal, RegionOne)."""
    with allot_serving(backend, workdir, policy="placement", **keystone_settings) as url:
        keystone.register_placement(url)
        yield url
