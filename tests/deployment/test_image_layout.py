"""The container image's layout works, checked natively (no container engine here).

The Dockerfile's build stage installs allot from a built wheel (not the source tree) and the
final stage adds only `migrations/` in the working directory. This test does the same in a
temporary directory: build the wheel, install it apart from the source tree, lay out the
working directory as the final stage does, then run `allot db upgrade` and `allot serve` there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.deployment.topology import Process, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _final_stage_copies() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    final = text.split("\nFROM ")[-1]
    return re.findall(r"^COPY (?!--from)(\S+) (\S+)$", final, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("image")
    wheels, site, workdir = tmp / "wheels", tmp / "site", tmp / "srv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    wheel = next(wheels.glob("allot-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    workdir.mkdir()
    for source, target in _final_stage_copies():
        shutil.copytree(
            ROOT / source, workdir / target, ignore=shutil.ignore_patterns("__pycache__")
        )
    return {"site": site, "workdir": workdir}


def _env(image: dict[str, Path], database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        PYTHONPATH=str(image["site"]),
        ALLOT_ENV="production",
        ALLOT_AUTH_JWT_SECRET=TEST_SECRET,
        ALLOT_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
    )
    return env


def test_the_final_stage_adds_only_the_migrations() -> None:
    assert _final_stage_copies() == [("migrations", "./migrations")]


def test_the_wheel_carries_the_package_and_its_data_files_only(image: dict[str, Path]) -> None:
    site = image["site"]
    assert (site / "app" / "authz" / "model.conf").is_file()
    assert list((site / "app" / "authz" / "policies").glob("*.csv"))
    assert not (site / "tests").exists() and not (site / "bench").exists()


def test_installed_allot_migrates_and_serves_from_the_image_layout(
    image: dict[str, Path], tmp_path: Path
) -> None:
    env = _env(image, tmp_path / "allot.db")
    where = subprocess.run(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        env=env,
        cwd=image["workdir"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(image["site"])), "the installed copy, not the source tree"

    cli = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]
    upgrade = subprocess.run(
        [*cli, "db", "upgrade"], env=env, cwd=image["workdir"], capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    assert "database at head" in upgrade.stdout

    server = Process("image", free_port(), env, tmp_path / "serve.log")
    server.command = [*cli, "serve"]
    server.cwd = image["workdir"]
    try:
        server.start()
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        # Production defaults of the image: no docs without asking.
        assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 404
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
