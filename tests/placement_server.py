"""Real Placement 16.0.0 on a database of the test's choosing: PostgreSQL or MariaDB.

The shared tool's venv (`../shared/tools/placement/install.sh`), with PyMySQL added for MariaDB;
a configuration written here (noauth2: `x-auth-token: admin` is an admin), `placement-manage db
sync` for the schema, and gunicorn with one worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.deployment.topology import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
PLACEMENT_TOOLS = Path(os.environ.get("PLACEMENT_TOOLS", ROOT.parent / "shared/tools/placement"))
PLACEMENT_VENV = Path(os.environ.get("PLACEMENT_VENV", "/tmp/placement-venv"))
MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
POSTGRES = "postgresql+psycopg2://postgres:postgres@127.0.0.1:5432"


def ensure_venv() -> None:
    if not (PLACEMENT_VENV / "bin/placement-manage").exists():
        subprocess.run(["bash", str(PLACEMENT_TOOLS / "install.sh")], check=True, timeout=1200)
    if not list(PLACEMENT_VENV.glob("lib/python*/site-packages/pymysql")):
        subprocess.run(
            [str(PLACEMENT_VENV / "bin/pip"), "install", "--quiet", "PyMySQL==1.1.1"],
            check=True,
            timeout=600,
        )


def create_database(kind: str, name: str) -> str:
    """A new, empty database on the machine's PostgreSQL or MariaDB; its SQLAlchemy URL."""
    if kind == "postgresql":
        for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
        return f"{POSTGRES}/{name}"
    sql = f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
    subprocess.run(["mysql", "-h", "127.0.0.1", "-uroot", "-e", sql], check=True)
    return f"{MARIADB}/{name}?charset=utf8mb4"


def drop_database(kind: str, name: str) -> None:
    if kind == "postgresql":
        sql = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=False)
    else:
        sql = f"DROP DATABASE IF EXISTS `{name}`"
        subprocess.run(["mysql", "-h", "127.0.0.1", "-uroot", "-e", sql], check=False)


def _config(workdir: Path, connection: str, keystone: str = "") -> Path:
    """placement.conf: noauth2, or keystonemiddleware with `keystone` as its
    [keystone_authtoken] section's body."""
    etc = workdir / "placement-etc"
    etc.mkdir(exist_ok=True)
    auth = f"keystone\n[keystone_authtoken]\n{keystone}" if keystone else "noauth2"
    (etc / "placement.conf").write_text(
        f"[DEFAULT]\ndebug = False\n[api]\nauth_strategy = {auth}\n"
        f"[placement_database]\nconnection = {connection}\nmax_pool_size = 10\n"
        "max_overflow = 20\n"
    )
    return etc


def sync_schema(connection: str, workdir: Path, keystone: str = "") -> None:
    """Placement's own `placement-manage db sync`: its schema at 16.0.0's head."""
    ensure_venv()
    etc = _config(workdir, connection, keystone)
    subprocess.run(
        [str(PLACEMENT_VENV / "bin/placement-manage"), "--config-file", str(etc / "placement.conf"),
         "db", "sync"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def with_standard_traits(connection: str, workdir: Path) -> None:
    """Placement's schema, and the standard traits it writes on its first request."""
    with placement(connection, workdir) as url:
        headers = {"x-auth-token": "admin", "openstack-api-version": "placement 1.6"}
        httpx.get(f"{url}/traits", headers=headers, timeout=60).raise_for_status()


@contextmanager
def placement(
    connection: str, workdir: Path, workers: int = 1, keystone: str = ""
) -> Iterator[str]:
    """Placement serving `connection` (its schema synced first); its URL. `keystone`: the
    [keystone_authtoken] settings, to validate Keystone tokens instead of noauth2."""
    workdir.mkdir(parents=True, exist_ok=True)
    sync_schema(connection, workdir, keystone)
    etc = workdir / "placement-etc"
    port = free_port()
    with (workdir / "placement.log").open("ab") as out:
        process = subprocess.Popen(
            [str(PLACEMENT_VENV / "bin/gunicorn"), "--workers", str(workers),
             "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null",
             "--log-level", "warning", "placement.wsgi.api:application"],
            env={**os.environ, "OS_PLACEMENT_CONFIG_DIR": str(etc)},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, "Placement", 120)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
