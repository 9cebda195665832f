"""The `allot` command, run as a user would run it: a real process in a fresh directory."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest

from app.authz.policy import policy_path
from tests.conftest import MINTED_TOKENS, PG_URL

ALLOT = str(Path(sys.executable).parent / "allot")
LATEST = {"openstack-api-version": "placement latest"}


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env.update(settings)
    return env


def allot(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALLOT, *args], cwd=cwd, env=_env(**settings), capture_output=True, text=True, timeout=60
    )


def token(cwd: Path, *args: str, **settings: str) -> str:
    result = allot(cwd, "token", *args, **settings)
    assert result.returncode == 0, result.stderr
    minted = result.stdout.strip()
    MINTED_TOKENS.add(minted)
    return minted


def test_token_mints_with_a_local_secret_created_once(tmp_path: Path) -> None:
    minted = token(tmp_path, "--project", "P", "--user", "U", "--roles", "member,reader")
    secret_file = tmp_path / "var" / "jwt-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    claims = jwt.decode(minted, secret, algorithms=["HS256"])
    assert (claims["sub"], claims["project_id"], claims["roles"]) == (
        "U",
        "P",
        ["member", "reader"],
    )
    assert claims["exp"] - claims["iat"] == 3600
    assert "system" not in claims

    system = token(tmp_path, "--user", "ops", "--roles", "reader", "--system", "--ttl", "30m")
    claims = jwt.decode(system, secret, algorithms=["HS256"])
    assert claims["system"] == "all" and claims["exp"] - claims["iat"] == 1800
    assert secret_file.read_text().strip() == secret  # created once, then reused


def test_token_uses_the_configured_secret(tmp_path: Path) -> None:
    secret = "a-configured-secret-of-enough-length-0123456789"
    minted = token(tmp_path, "--user", "U", ALLOT_AUTH_JWT_SECRET=secret)
    assert jwt.decode(minted, secret, algorithms=["HS256"])["sub"] == "U"
    assert not (tmp_path / "var").exists()  # no local secret when one is configured


def test_db_upgrade_migrates_an_empty_sqlite_database_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        result = allot(tmp_path, "db", "upgrade", ALLOT_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        assert "database at head" in result.stdout
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"resource_providers", "allocations", "consumers", "alembic_version"} <= tables


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (ALLOT_TEST_DATABASE_URL; CI sets it)")
def test_db_upgrade_on_postgresql(tmp_path: Path) -> None:
    result = allot(tmp_path, "db", "upgrade", ALLOT_DATABASE_URL=str(PG_URL))
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout


BAD_SETTINGS = [
    ({"ALLOT_MAX_BODY_BYTES": "lots"}, "ALLOT_MAX_BODY_BYTES"),
    ({"ALLOT_MAX_BODY_BYTES": "7"}, "ALLOT_MAX_BODY_BYTES"),
    ({"ALLOT_ENV": "staging"}, "ALLOT_ENV"),
    ({"ALLOT_LOG_LEVEL": "LOUD"}, "ALLOT_LOG_LEVEL"),
    ({"ALLOT_DATABASE_URL": "mysql://db/allot"}, "ALLOT_DATABASE_URL"),
    ({"ALLOT_POLICY": "/nonexistent/policy.csv"}, "ALLOT_POLICY"),
    ({"ALLOT_RATE_LIMIT": "plenty"}, "ALLOT_RATE_LIMIT"),
    ({"ALLOT_RATE_LIMIT_STORAGE": "redis://127.0.0.1:8532/0"}, "ALLOT_RATE_LIMIT_STORAGE"),
    ({"ALLOT_AUTH_PUBLIC_KEY_FILE": "/nonexistent.pem"}, "ALLOT_AUTH_PUBLIC_KEY_FILE"),
    ({"ALLOT_AUTH_ALGORITHMS": "none"}, "ALLOT_AUTH_ALGORITHMS"),
    ({"ALLOT_ENV": "production"}, "ALLOT_AUTH_JWT_SECRET"),
]


def _assert_one_line_naming(stderr: str, settings: dict[str, str], named: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert named in lines[0] and "Traceback" not in stderr
    for value in settings.values():
        if value not in ("production", "none"):
            assert value not in lines[0]  # the setting is named, its value is not echoed


@pytest.mark.parametrize(("settings", "named"), BAD_SETTINGS)
def test_bad_settings_stop_serve_with_one_line_naming_the_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, str],
    named: str,
) -> None:
    import uvicorn

    from app import cli
    from app.settings import get_settings

    def started(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("allot serve started with a bad setting")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("ALLOT_")]:
        monkeypatch.delenv(key)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", "8541"]) == 2
    finally:
        get_settings.cache_clear()
    _assert_one_line_naming(capsys.readouterr().err, settings, named)


@pytest.mark.parametrize(("settings", "named"), [BAD_SETTINGS[0], BAD_SETTINGS[5], BAD_SETTINGS[7]])
def test_bad_settings_stop_the_real_command(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    result = allot(tmp_path, "serve", "--port", "8541", **settings)
    assert result.returncode == 2
    _assert_one_line_naming(result.stderr, settings, named)


def _wait_until_up(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"allot serve exited: {process.stderr and process.stderr.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("allot serve did not come up")


@contextmanager
def serving(cwd: Path, port: int, **settings: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [ALLOT, "serve", "--port", str(port)],
        cwd=cwd,
        env=_env(ALLOT_RATE_LIMIT="off", **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_from_an_empty_directory_migrates_and_serves(tmp_path: Path) -> None:
    with serving(tmp_path, 8542) as (base, process):
        assert httpx.get(f"{base}/").json()["versions"][0]["max_version"] == "1.39"
        admin = token(tmp_path, "--project", "ops", "--user", "me", "--roles", "admin")
        headers = {**LATEST, "authorization": f"Bearer {admin}"}
        created = httpx.post(
            f"{base}/resource_classes", json={"name": "CUSTOM_GPU"}, headers=headers
        )
        assert created.status_code == 201
        assert httpx.get(f"{base}/resource_classes/CUSTOM_GPU", headers=headers).status_code == 200
        assert httpx.get(f"{base}/resource_classes", headers=LATEST).status_code == 401
        assert httpx.get(f"{base}/docs").status_code == 200
    assert (tmp_path / "var" / "allot.db").exists()
    log = process.stderr.read() if process.stderr else ""
    assert '"route": "/resource_classes"' in log  # JSON access lines...
    assert admin not in log and "Bearer" not in log  # ...that never carry the token


def test_sighup_reloads_the_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(Path(policy_path("tenant")).read_text())
    with serving(tmp_path, 8543, ALLOT_POLICY=str(policy)) as (base, process):
        member = token(tmp_path, "--project", "A", "--user", "m", "--roles", "member")
        headers = {**LATEST, "authorization": f"Bearer {member}"}
        body = {"name": "CUSTOM_BY_MEMBER"}
        assert httpx.post(f"{base}/resource_classes", json=body, headers=headers).status_code == 403
        policy.write_text(policy.read_text() + "p, member, resource_classes:write, any\n")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        status = 403
        while status == 403 and time.monotonic() < deadline:
            time.sleep(0.1)
            status = httpx.post(f"{base}/resource_classes", json=body, headers=headers).status_code
        assert status == 201


def test_policy_check_explains_the_deciding_rule(tmp_path: Path) -> None:
    member = token(tmp_path, "--project", "A", "--user", "m", "--roles", "member")
    read = allot(tmp_path, "policy", "check", "--token", member, "GET", "/resource_classes")
    assert read.returncode == 0, read.stderr
    assert "ALLOW" in read.stdout and "member, resource_classes:read, any" in read.stdout

    write = allot(tmp_path, "policy", "check", "--token", member, "POST", "/resource_classes")
    assert "DENY" in write.stdout and "resource_classes:write" in write.stdout

    own = allot(
        tmp_path,
        "policy",
        "check",
        "--token",
        member,
        "--owner",
        "A",
        "PUT",
        "/resource_providers/x",
    )
    other = allot(
        tmp_path,
        "policy",
        "check",
        "--token",
        member,
        "--owner",
        "B",
        "PUT",
        "/resource_providers/x",
    )
    assert "ALLOW" in own.stdout and "DENY" in other.stdout

    placement = allot(
        tmp_path, "policy", "check", "--token", member, "GET", "/resource_classes",
        ALLOT_POLICY="placement",
    )  # fmt: skip
    assert "DENY" in placement.stdout

    forged = allot(tmp_path, "policy", "check", "--token", "not.a.token", "GET", "/traits")
    assert "DENY (401)" in forged.stdout
