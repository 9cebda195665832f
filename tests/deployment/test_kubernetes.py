"""deploy/kubernetes: the Deployment's invariants, on the manifests as `kubectl kustomize`
renders them (or as written, where kubectl is not installed).

What allot needs at run time is checked against what the pod gives it: a read-only root
filesystem with a writable volume wherever allot writes at start, secrets by reference only,
and a grace period longer than the server's own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"


def _documents() -> list[dict[str, Any]]:
    if shutil.which("kubectl"):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, check=True
        ).stdout
        return [d for d in yaml.safe_load_all(rendered) if d]
    files = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    return [yaml.safe_load((BASE / name).read_text()) for name in files]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == "Deployment"]
    assert len(found) == 1
    return found[0]


def _api(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "api")


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_root_filesystem_is_read_only_and_the_process_unprivileged(
    deployment: dict[str, Any],
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    api = _api(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert api["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_every_place_allot_writes_at_start_is_a_writable_volume(
    deployment: dict[str, Any],
) -> None:
    """Several workers write their metrics in PROMETHEUS_MULTIPROC_DIR (or, unset, in the
    temporary directory): on a read-only root that must be a mounted volume, or the pod
    stops at start with `allot: configuration error: PROMETHEUS_MULTIPROC_DIR`."""
    api = _api(deployment)
    env = _env(api)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in api["volumeMounts"]}
    writable = [path for path, volume in mounts.items() if "emptyDir" in volume]
    assert int(env["ALLOT_WORKERS"]["value"]) > 1
    metrics = env.get("PROMETHEUS_MULTIPROC_DIR", {}).get("value", "/tmp")
    assert any(metrics == p or metrics.startswith(p.rstrip("/") + "/") for p in writable)
    # No embedded SQLite (it would write ./var): the database is PostgreSQL, from a Secret.
    assert "ALLOT_DATABASE_URL" in env


def test_secrets_come_by_reference_only(deployment: dict[str, Any]) -> None:
    env = _env(_api(deployment))
    for name in ("ALLOT_DATABASE_URL", "ALLOT_AUTH_JWT_SECRET"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"]
    assert not [d for d in _documents() if d["kind"] == "Secret"]


def test_probes_and_a_grace_period_longer_than_the_servers(deployment: dict[str, Any]) -> None:
    api = _api(deployment)
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    graceful = int(_option(api["args"], "--graceful-timeout"))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > graceful
    assert api["resources"]["requests"] and api["resources"]["limits"]
