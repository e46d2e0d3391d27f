"""README's settings table and the Settings class must agree."""

from __future__ import annotations

import re
from pathlib import Path

from healthflow.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> set[str]:
    return set(re.findall(r"^\| `(HEALTHFLOW_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))


def test_every_setting_is_documented_in_the_readme() -> None:
    fields = {f"HEALTHFLOW_{name.upper()}" for name in Settings.model_fields}
    assert fields - documented() == set(), "add these to README's settings table"
    assert documented() - fields == set(), "README documents settings that do not exist"


def test_every_setting_has_a_description() -> None:
    assert all(f.description for f in Settings.model_fields.values())
