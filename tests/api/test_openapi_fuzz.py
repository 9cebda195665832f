"""A schema-driven fuzzer (schemathesis) against a real `allot serve`, on each database.

The document is the app's own /openapi.json. The fuzzer sends what it describes (positive)
and what it forbids (negative), as an admin and as a member of a project that owns nothing.
Whatever it sends: no 5xx, every status is one the document lists for that operation, every
response matches the documented content type and schema, and a request the document forbids
is refused (so the document says exactly what the latest microversion accepts). Bounded: a
few examples per operation and mode.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.conftest import (
    BACKENDS,
    TEST_SECRET,
    create_scratch_database,
    drop_scratch_database,
    mint,
)
from tests.conftest import test_settings as settings_for

ALLOT = str(Path(sys.executable).parent / "allot")
PORT = 8550
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    # Refused when it breaks the document. (The converse, "accepted when it keeps to it", is
    # not checked: cross-field rules such as mappings naming their groups or min_unit <=
    # max_unit are the service's, beyond what a JSON schema can say, and answered 400.)
    negative_data_rejection,
]


def _run(*args: str, env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        [ALLOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_target(request: pytest.FixtureRequest) -> Iterator[str]:
    """`allot serve` on a database of its own; yields its base URL."""
    import os

    with tempfile.TemporaryDirectory(prefix="allot-fuzz-") as tmp:
        url = asyncio.run(create_scratch_database(request.param, Path(tmp)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
        env |= {
            "ALLOT_DATABASE_URL": url,
            "ALLOT_AUTH_JWT_SECRET": TEST_SECRET,
            "ALLOT_RATE_LIMIT": "off",
            "ALLOT_LOG_LEVEL": "WARNING",
        }
        _run("db", "upgrade", env=env, cwd=Path(tmp))
        server_log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [ALLOT, "serve", "--port", str(PORT)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=server_log,
        )
        base = f"http://127.0.0.1:{PORT}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "serve failed"
                time.sleep(0.2)
            yield base
        finally:
            died = server.poll()
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            asyncio.run(drop_scratch_database(url))
            # A server that died under the fuzzer is a finding: show how it ended.
            tail = (Path(tmp) / "serve.log").read_text()[-3000:]
            assert died is None, f"allot serve exited ({died}) during the run:\n{tail}"


# The document the app serves at /openapi.json (checked below), loaded at collection time so that
# every operation is its own test, named after its route.
DOCUMENT = create_app(settings_for("sqlite+aiosqlite://")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CALLERS = {
    "admin": mint(roles=["admin"], project="fuzz-project", user="fuzzer"),
    "member": mint(roles=["member", "reader"], project="fuzz-other-project", user="outsider"),
}


@pytest.fixture(params=sorted(CALLERS))
def caller(request: pytest.FixtureRequest) -> str:
    return CALLERS[request.param]


def test_the_served_document_is_the_one_fuzzed(fuzz_target: str) -> None:
    assert httpx.get(f"{fuzz_target}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(
    case: schemathesis.Case, fuzz_target: str, caller: str
) -> None:
    auth = {"Authorization": f"Bearer {caller}"}
    # At whatever microversion the fuzzer picked (or garbled): never a 5xx.
    case.call_and_validate(base_url=fuzz_target, headers=auth, checks=[not_a_server_error])
    # The document describes the latest microversion: there, everything must match it.
    case.headers = {**(case.headers or {}), "OpenStack-API-Version": "placement latest"}
    case.call_and_validate(base_url=fuzz_target, headers=auth, checks=CHECKS)
