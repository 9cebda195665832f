"""docker-compose.yml, Dockerfile and .env.example, checked without a container engine.

The Compose file is validated against the Compose Specification's JSON schema
(`compose-spec.json`: the schema as vendored by the `check-jsonschema` package from the
compose-spec project, Apache-2.0, see LICENSE.compose-spec), then the topology it must have is
checked service by service, and its variables are interpolated from .env.example the way
`docker compose` would, so the settings the containers get are validated by allot itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SECRETS = ("ALLOT_AUTH_JWT_SECRET", "POSTGRES_PASSWORD")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env_example() -> tuple[dict[str, str], set[str]]:
    """(assigned variables, every variable named, commented out or not)."""
    assigned: dict[str, str] = {}
    named: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if not match:
            continue
        named.add(match.group(2))
        if not match.group(1):
            assigned[match.group(2)] = match.group(3)
    return assigned, named


_VARIABLE = re.compile(r"\$\$|\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}; $$ is a literal dollar."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"  # an escaped dollar, before any variable
        name, op, arg = match.groups()
        current = env.get(name, "")
        if op == "?" and not current:
            raise LookupError(f"{name}: {arg}")
        if op == "-" and not current:
            return arg
        return current

    return _VARIABLE.sub(replace, value)


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    errors = sorted(Draft202012Validator(schema).iter_errors(_compose()), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_compose_file() -> None:
    # The validation above is only worth something if the schema rejects real mistakes.
    schema = Draft202012Validator(json.loads((HERE / "compose-spec.json").read_text()))
    broken = _compose()
    broken["services"]["api"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["api"]["restart_policy"] = "always"
    assert len(list(schema.iter_errors(broken))) >= 2


def test_postgres_keeps_its_data_in_a_volume_and_reports_health() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    volume = postgres["volumes"][0].split(":")
    assert volume[0] in compose["volumes"], "a named volume, declared at the top level"
    assert volume[1] == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_redis_reports_health() -> None:
    redis = _compose()["services"]["redis"]
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_migrate_is_a_one_shot_job_after_postgres_is_healthy() -> None:
    services = _compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["image"] == services["api"]["image"], "the same image as the API"
    assert _depends(migrate) == {"postgres": "service_healthy"}


def test_api_waits_for_healthy_stores_and_a_completed_migration() -> None:
    api = _compose()["services"]["api"]
    assert _depends(api) == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert api["command"][0] == "serve"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_api_scales_behind_one_published_port() -> None:
    services = _compose()["services"]
    api = services["api"]
    # `docker compose up --scale api=3` fails on a fixed name or a fixed host port.
    assert "container_name" not in api
    assert "ports" not in api
    published = [s for s, spec in services.items() if spec.get("ports")]
    assert published == ["proxy"]
    assert len(services["proxy"]["ports"]) == 1
    assert "container_name" not in services["proxy"]
    assert _depends(services["proxy"]) == {"api": "service_healthy"}
    nginx = _interpolate(_compose()["configs"]["nginx"]["content"], {})
    assert "http://api:8000" in nginx


def test_the_proxy_takes_its_resolver_from_whichever_engine_runs_it() -> None:
    """Docker's DNS is 127.0.0.11, Podman's aardvark-dns on the network's gateway: the proxy
    renders its configuration at start with the container's first nameserver, so no address
    is written into the file (tests/deployment/test_container.py runs it under Podman)."""
    proxy = _compose()["services"]["proxy"]
    assert proxy["entrypoint"] == ["/bin/sh", "/etc/nginx/allot-proxy.sh"]
    targets = {c["source"]: c["target"] for c in proxy["configs"]}
    assert targets == {
        "proxy-start": "/etc/nginx/allot-proxy.sh",
        "nginx": "/etc/nginx/allot.conf.template",
    }
    configs = _interpolate(_compose()["configs"], {})
    assert "resolver @RESOLVER@ " in configs["nginx"]["content"]
    assert "127.0.0.11" not in configs["nginx"]["content"]
    assert "/etc/resolv.conf" in configs["proxy-start"]["content"]


def test_every_process_shares_rate_limits_and_the_database() -> None:
    env = _interpolate(_compose()["services"]["api"]["environment"], _filled_env())
    assert env["ALLOT_RATE_LIMIT_STORAGE"].startswith("redis://redis:")
    assert env["ALLOT_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["ALLOT_DATABASE_URL"]


def _filled_env() -> dict[str, str]:
    assigned, _ = _env_example()
    return {**assigned, **{name: f"filled-in-{name.lower()}" for name in SECRETS}}


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_a_secret(secret: str) -> None:
    env = _filled_env()
    env[secret] = ""
    with pytest.raises(LookupError, match=secret):
        _interpolate(_compose(), env)


@pytest.mark.parametrize("service", ["migrate", "api"])
def test_the_containers_get_settings_allot_accepts(service: str) -> None:
    env = _filled_env()
    compose = _interpolate(_compose(), env)
    container = {
        **{k: v for k, v in env.items() if k.startswith("ALLOT_")},  # env_file: .env
        **compose["services"][service]["environment"],
    }
    settings = Settings(**{k.removeprefix("ALLOT_").lower(): v for k, v in container.items()})
    assert settings.env == "production"
    assert settings.has_key_source
    assert not settings.is_embedded


def test_env_example_lists_every_setting_and_no_secret() -> None:
    assigned, named = _env_example()
    settings = {f"ALLOT_{name.upper()}" for name in Settings.model_fields}
    assert settings - named == set(), "settings missing from .env.example"
    assert "ALLOT_WORKERS" in named
    for secret in SECRETS:
        assert assigned[secret] == ""


def test_env_example_values_are_valid_settings() -> None:
    assigned, _ = _env_example()
    values = {
        k.removeprefix("ALLOT_").lower(): v
        for k, v in assigned.items()
        if k.startswith("ALLOT_") and k != "ALLOT_WORKERS" and v
    }
    settings = Settings(**values, auth_jwt_secret="x" * 48)
    assert settings.rate_limit == "1000/second"


# --- Dockerfile -----------------------------------------------------------------------------


def _stages() -> list[list[str]]:
    """Dockerfile instructions (continuations joined), split into build stages."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_and_the_final_image_is_lean() -> None:
    stages = _stages()
    assert len(stages) >= 2
    final = "\n".join(stages[-1])
    assert "slim" in (ROOT / "Dockerfile").read_text().split("PYTHON_IMAGE=")[1].split()[0]
    assert "COPY --from=build /opt/allot /opt/allot" in final
    # No compiler, package manager run or source tree in the final image.
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert not re.search(r"COPY (app|tests|bench|\.)\s", final)


def test_dockerfile_runs_unprivileged_with_a_healthcheck_and_allot_serve() -> None:
    final = _stages()[-1]
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    healthcheck = next(line for line in final if line.startswith("HEALTHCHECK "))
    assert "/healthz" in healthcheck
    assert 'ENTRYPOINT ["allot"]' in final
    cmd = json.loads(next(line for line in final if line.startswith("CMD "))[4:])
    assert cmd[0] == "serve" and "--workers" not in cmd, "workers come from ALLOT_WORKERS"
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "ALLOT_WORKERS=" in env and "ALLOT_ENV=production" in env
    assert not re.search(r"SECRET|PASSWORD", env)


def test_dockerfile_ships_the_migrations_in_the_working_directory() -> None:
    final = _stages()[-1]
    workdir = next(line for line in final if line.startswith("WORKDIR ")).split()[1]
    assert "COPY migrations ./migrations" in final
    assert workdir.startswith("/")


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded unless named"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "README.md", "app", "migrations"}
