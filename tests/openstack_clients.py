"""OpenStack's own programs, from PyPI, in virtualenvs of their own outside the repository.

Keystone (the shared tool's venv), Nova (for its placement client, SchedulerReportClient) and
the OpenStack CLI with osc-placement. Each venv is made on first use, or ahead of time with
`make openstack-tools` (`python -m tests.openstack_clients`). Versions are pinned: these are
the clients a cloud of this release runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYSTONE_TOOLS = Path(os.environ.get("KEYSTONE_TOOLS", ROOT.parent / "shared/tools/keystone"))

NOVA_PACKAGES = ["nova==34.0.0"]
OSC_PACKAGES = ["python-openstackclient==10.5.0", "osc-placement==4.9.1"]
_TMP = Path(tempfile.gettempdir())
NOVA_VENV = Path(os.environ.get("ALLOT_NOVA_VENV", _TMP / "allot-nova-venv"))
OSC_VENV = Path(os.environ.get("ALLOT_OSC_VENV", _TMP / "allot-osc-venv"))


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    """The venv's bin directory, installing `packages` into it unless already there."""
    marker = venv / ".allot-complete"
    wanted = "\n".join(packages)
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *packages],
            check=True,
            timeout=1200,
        )
        marker.write_text(wanted)
    return venv / "bin"


def ensure_keystone() -> None:
    subprocess.run([str(KEYSTONE_TOOLS / "install.sh")], check=True, stdout=subprocess.DEVNULL)


def nova_python() -> Path:
    return ensure_venv(NOVA_VENV, NOVA_PACKAGES) / "python"


def openstack_cli() -> Path:
    return ensure_venv(OSC_VENV, OSC_PACKAGES) / "openstack"


if __name__ == "__main__":
    ensure_keystone()
    print(nova_python())
    print(openstack_cli())
