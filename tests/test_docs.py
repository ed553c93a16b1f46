"""The README's figures are the ones the commands wrote, not typed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("docs/reliability.md", id="reliability"),
        pytest.param("docs/performance.md", id="performance"),
    ],
)
def test_readme_tables_match_what_the_commands_wrote(source: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = table_rows((ROOT / source).read_text(encoding="utf-8"))
    assert rows, f"{source} has no table"
    missing = [row for row in rows if row not in readme]
    assert missing == [], f"README.md lacks rows of {source}: {missing[:3]}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme.split("\n## ", 1)[0]
    assert "make run" in head
    assert "make test" in head
    assert head.index("make run") < head.index("make test")
