"""The settings surface: every ``SEPGUARD_*`` variable the code reads is in the README's settings
table, and the table's plain defaults are the code's."""

import re
from pathlib import Path

import pytest

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[3]
UNITS = {"": 1, "MiB": 1024**2, "GiB": 1024**3}


def readme_table() -> dict[str, str]:
    """Variable -> default cell of the README's settings table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(SEPGUARD_[A-Z_]+)` \| ([^|]+?) \|", section, flags=re.MULTILINE))


def variables_in_code() -> set[str]:
    """Every ``SEPGUARD_*`` name the service, the worker or the engine spells out."""
    names: set[str] = set()
    for package in ("app", "worker", "engine"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"SEPGUARD_[A-Z][A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    return names


def test_the_table_lists_every_variable_and_nothing_else() -> None:
    table = set(readme_table())
    settings = {f"SEPGUARD_{name.upper()}" for name in Settings.model_fields}
    assert settings <= table, f"missing from the README: {sorted(settings - table)}"
    assert variables_in_code() <= table, f"missing from the README: {sorted(variables_in_code() - table)}"
    assert table <= settings | variables_in_code(), f"read by nothing: {sorted(table - settings - variables_in_code())}"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_plain_defaults_are_the_codes(name: str) -> None:
    cell = readme_table()[f"SEPGUARD_{name.upper()}"]
    default = Settings.model_fields[name].default
    number = re.fullmatch(r"([\d ]+(?:\.\d+)?)(?: (MiB|GiB))?", cell)
    if number:
        assert float(number.group(1).replace(" ", "")) * UNITS[number.group(2) or ""] == default, cell
    elif cell in ("true", "false"):
        assert default is (cell == "true")
    elif cell.startswith("`") and isinstance(default, str):
        assert cell.strip("`") == default
