"""deploy/kubernetes: the manifests as `kubectl kustomize` renders them (or as written, where
kubectl is not installed), validated against Kubernetes' published schemas
(`kubernetes-validate`), and their invariants.

What allot needs at run time is checked against what the pod gives it: a read-only root
filesystem with a writable volume wherever allot writes at start, secrets by reference only,
a grace period longer than the server's own; and the objects around it select its pods.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes" / "base"
OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "example"
# The oldest Kubernetes the manifests are for (HPA v2, PDB v1, seccompProfile fields).
KUBERNETES = "1.29.0"


def _documents(directory: Path = BASE) -> list[dict[str, Any]]:
    if shutil.which("kubectl"):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
        ).stdout
        return [d for d in yaml.safe_load_all(rendered) if d]
    if directory != BASE:
        if os.environ.get("CI") == "true":
            pytest.fail("CI renders the overlay with kubectl (kustomize), which is missing")
        pytest.skip("rendering an overlay needs kubectl (kustomize)")
    files = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    return [yaml.safe_load((BASE / name).read_text()) for name in files]


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return _one("Deployment")


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "example-overlay"])
def test_every_document_is_valid_against_the_published_schemas(directory: Path) -> None:
    documents = _documents(directory)
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
        ]
    )
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_service_budget_and_policy_select_the_api_pods_only(
    deployment: dict[str, Any],
) -> None:
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pods.items()
    selectors = {
        "Service": _one("Service")["spec"]["selector"],
        "PodDisruptionBudget": _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": _one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    migration = _one("Job")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in selectors.items():
        assert selector.items() <= pods.items(), kind
        assert not selector.items() <= migration.items(), f"{kind} selects the migration Job"
    autoscaler = _one("HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert autoscaler["minReplicas"] >= 2


def test_pods_spread_and_roll_without_losing_capacity(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]
    keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_migration_job_runs_db_upgrade_hardened() -> None:
    job = _one("Job")["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["args"] == ["db", "upgrade"]
    assert job["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "value" not in _env(container)["ALLOT_DATABASE_URL"]


def _api(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "api")


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable the container gets: its ConfigMaps' (as values), then its own."""
    merged: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        config = _one("ConfigMap")
        assert source["configMapRef"]["name"] == config["metadata"]["name"]
        merged |= {k: {"name": k, "value": v} for k, v in config["data"].items()}
    return merged | {e["name"]: e for e in container.get("env", [])}


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
    config = _one("ConfigMap")["data"]
    assert not [k for k in config if "SECRET" in k or "PASSWORD" in k or k.endswith("_URL")]


def test_probes_and_a_grace_period_longer_than_the_servers(deployment: dict[str, Any]) -> None:
    api = _api(deployment)
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    graceful = int(_option(api["args"], "--graceful-timeout"))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > graceful
    assert api["resources"]["requests"] and api["resources"]["limits"]
