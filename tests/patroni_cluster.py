"""A two-node PostgreSQL cluster managed by Patroni (Debian's `patroni` and `etcd-server`),
of the test's own: one etcd, two Patroni nodes with synchronous replication, on ports of
their own, data under a temporary directory, PostgreSQL run as the `postgres` user.

A node's "host" can be killed (its Patroni and its postmaster, SIGKILL) and brought back:
Patroni then rejoins it as a replica (pg_rewind).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.deployment.topology import wait_for
from tests.pg_cluster import _as_postgres, _bindir

TTL_S = 10


@dataclass
class Node:
    name: str
    pg_port: int
    api_port: int
    workdir: Path
    config: Path
    patroni: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.workdir / self.name

    def start(self) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.patroni = subprocess.Popen(
            _as_postgres("patroni", str(self.config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def role(self) -> str | None:
        """'primary', 'replica' or None (down or unknown), from Patroni's REST API."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.api_port}/patroni", timeout=1
            ) as r:
                state = json.load(r)
        except (OSError, urllib.error.URLError, ValueError):
            return None
        if state.get("state") != "running":
            return None
        return "primary" if state.get("role") in ("master", "primary") else "replica"

    def is_sync_replica(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.api_port}/sync", timeout=1
            ) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill_host(self) -> None:
        """The host dies: Patroni and the postmaster, SIGKILL, nothing shut down cleanly."""
        pid_file = self.data / "postmaster.pid"
        if self.patroni is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.patroni.pid, signal.SIGKILL)
            self.patroni.wait(timeout=10)
            self.patroni = None
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    def stop(self) -> None:
        if self.patroni is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.patroni.pid, signal.SIGTERM)
            try:
                self.patroni.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_host()
        subprocess.run(
            _as_postgres(
                str(_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
            ),
            capture_output=True,
            check=False,
        )


def _node_config(
    name: str, pg_port: int, api_port: int, etcd_port: int, workdir: Path
) -> dict[str, object]:
    return {
        "scope": f"allot-test-{workdir.name}",
        "name": name,
        "restapi": {"listen": f"127.0.0.1:{api_port}", "connect_address": f"127.0.0.1:{api_port}"},
        "etcd3": {"hosts": f"127.0.0.1:{etcd_port}"},
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S,
                "loop_wait": 1,
                "retry_timeout": 4,
                "maximum_lag_on_failover": 1_048_576,
                "synchronous_mode": True,
                "postgresql": {
                    "use_pg_rewind": True,
                    "parameters": {
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "wal_log_hints": "on",
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "max_connections": 100,
                    },
                },
            },
            "initdb": [{"auth": "trust"}, {"encoding": "UTF8"}],
            "pg_hba": [
                "host replication all 127.0.0.1/32 trust",
                "host all all 127.0.0.1/32 trust",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}",
            "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": str(workdir / name),
            "bin_dir": str(_bindir()),
            "pgpass": str(workdir / f"{name}.pgpass"),
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "postgres"},
                "rewind": {"username": "postgres"},
            },
            "parameters": {"unix_socket_directories": str(workdir), "fsync": "off"},
        },
    }


@contextlib.contextmanager
def patroni_cluster(ports: list[int]) -> Iterator[list[Node]]:
    """etcd and two Patroni nodes; yields the nodes once one is primary and the other its
    synchronous replica. `ports`: etcd client and peer, then each node's PostgreSQL and API."""
    workdir = Path(tempfile.mkdtemp(prefix="allot-patroni-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
    etcd_client, etcd_peer = ports[0], ports[1]
    etcd = subprocess.Popen(
        [
            "etcd",
            *("--name", "allot-test", "--data-dir", str(workdir / "etcd")),
            *("--listen-client-urls", f"http://127.0.0.1:{etcd_client}"),
            *("--advertise-client-urls", f"http://127.0.0.1:{etcd_client}"),
            *("--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}"),
            *("--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}"),
            *("--initial-cluster", f"allot-test=http://127.0.0.1:{etcd_peer}"),
        ],
        stdout=(workdir / "etcd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    nodes: list[Node] = []
    try:
        for index, name in enumerate(("node1", "node2")):
            pg_port, api_port = ports[2 + 2 * index], ports[3 + 2 * index]
            config = workdir / f"{name}.yml"
            config.write_text(
                yaml.safe_dump(_node_config(name, pg_port, api_port, etcd_client, workdir))
            )
            if os.geteuid() == 0:
                shutil.chown(config, "postgres")
            nodes.append(Node(name, pg_port, api_port, workdir, config))
        try:
            nodes[0].start()
            wait_for(lambda: nodes[0].role() == "primary", "node1 to bootstrap as primary", 90)
            nodes[1].start()
            wait_for(nodes[1].is_sync_replica, "node2 to become the synchronous replica", 150)
        except AssertionError as exc:
            logs = "\n".join(
                f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                for log in sorted(workdir.glob("*.log"))
            )
            raise AssertionError(f"{exc}\n{logs}") from None
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        etcd.terminate()
        etcd.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
