"""The README's settings table is the list operators read: it names every setting there is."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _settings_section() -> str:
    text = README.read_text()
    return text[text.index("<!-- section:settings -->") : text.index("<!-- /section:settings -->")]


def test_every_setting_is_in_the_readme_table_with_a_default() -> None:
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(ALLOT_[A-Z_]+)` \| ([^|]+) \|", _settings_section(), re.M)
    }
    expected = {f"ALLOT_{name.upper()}" for name in Settings.model_fields}
    assert expected - set(rows) == set(), "settings missing from the README table"
    assert set(rows) - expected <= {"ALLOT_WORKERS"}, "README lists settings that do not exist"
    assert all(default.strip() for default in rows.values())


def test_the_quickstart_uses_commands_that_exist() -> None:
    text = README.read_text()
    quickstart = text[text.index("<!-- section:quickstart -->") :]
    assert "allot token --project demo --user me --roles admin" in quickstart
    assert "make run" in text.split("<!-- section:quickstart -->")[0]
