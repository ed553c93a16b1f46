"""pyproject.toml declares exactly the distributions the exporter's code imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Declared for a reason other than an import, with the reason in pyproject.toml.
NOT_IMPORTED_ON_PURPOSE = {"sniffio"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _canonical(re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0])
        for spec in project["dependencies"]
    }


def _imported_distributions() -> set[str]:
    modules: set[str] = set()
    for folder in ("exporter", "generated"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module)
    local = {"studio_exporter", "studio_client", "accounts_client"}
    distributions = packages_distributions()
    found: set[str] = set()
    for module in modules:
        top = module.split(".")[0]
        if top in local or top in sys.stdlib_module_names:
            continue
        # Namespace packages (opentelemetry, google) are shared: find the one that has the module.
        candidates = distributions.get(top, [])
        owner = _owner(module, candidates)
        found.add(_canonical(owner))
    return found


def _owner(module: str, candidates: list[str]) -> str:
    from importlib.metadata import distribution

    if len(candidates) == 1:
        return candidates[0]
    path = module.replace(".", "/")
    for name in candidates:
        files = distribution(name).files or []
        if any(str(file).startswith(path) for file in files):
            return name
    raise AssertionError(f"no installed distribution provides {module} (among {candidates})")


def test_every_imported_distribution_is_declared() -> None:
    missing = _imported_distributions() - _declared()
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_declared_distribution_is_imported() -> None:
    unused = _declared() - _imported_distributions() - NOT_IMPORTED_ON_PURPOSE
    assert not unused, f"declared in pyproject.toml but never imported: {sorted(unused)}"
