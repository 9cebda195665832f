"""The layers keep to their places: services hold the domain rules and never see the web
framework, not even through a module they import."""

from __future__ import annotations

import subprocess
import sys

_IMPORT_EVERY_SERVICE = """
import importlib, pkgutil, sys
import app.services
for module in pkgutil.walk_packages(app.services.__path__, "app.services."):
    importlib.import_module(module.name)
print(sorted({name.split(".")[0] for name in sys.modules} & {"fastapi", "starlette"}))
"""


def test_services_never_import_the_web_framework() -> None:
    # A fresh interpreter: this one has the whole application loaded already.
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERY_SERVICE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
