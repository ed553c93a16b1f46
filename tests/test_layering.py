"""The package's folders are its layers: which folder may import which, read from every module."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "exporter" / "studio_exporter"
ROOT = "studio_exporter"

#: The top level holds the process and its wiring; every other module lives in a folder.
TOP_LEVEL = frozenset({"accounts", "app", "cli", "config", "logs", "progress", "signals"})

#: The folders each folder may import, besides itself and the package root (``__version__``).
#: A folder imports no top-level module (commands aside): the wiring reaches down, never up.
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "core": frozenset(),
    "store": frozenset({"core"}),
    "sinks": frozenset({"core"}),
    "sources": frozenset({"core", "sinks", "store"}),
    "web": frozenset(),
    "spec": frozenset(),
    "simulator": frozenset({"core"}),
    # Entry points like cli: they build what `run` builds (app, config, logs, signals).
    "commands": frozenset(
        {"core", "sources", "sinks", "store", "web", "simulator", "spec"}
        | {"app", "config", "logs", "signals"}
    ),
}

#: Imports that cross the rules above, each with the reason it holds today. A line here that no
#: module needs any more fails the test, so the list only shrinks.
EXCEPTIONS: Mapping[tuple[str, str], str] = {
    ("sources.studio_api", "config"): "Credentials and the API's defaults are defined in config",
    ("sources.accounts_api", "config"): "Secret, the credential type config builds",
    ("sources.poller", "config"): "RETENTION, the retention default defined in config",
    ("sources.push", "web.server"): "HookResponse, what a webhook handler answers the web server",
    ("sinks.shipper", "store.protocols"): "it drains the span outbox, through the store's protocol",
}

#: Modules of the standard library that do I/O or read the clock: never in the pure core.
IO_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "fcntl",
        "http",
        "logging",
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "select",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib.request",
    }
)

#: Libraries that talk to the outside world, and the only places that may import each
#: (a folder, or one module).
LIBRARIES: Mapping[str, frozenset[str]] = {
    "studio_client": frozenset({"sources.studio_api"}),
    "accounts_client": frozenset({"sources.accounts_api"}),
    "psycopg": frozenset({"store"}),
    "sqlite3": frozenset({"store"}),
    "grpc": frozenset({"sinks"}),
    "opentelemetry": frozenset({"sinks"}),
}

#: Folders only the entry points (cli, commands) may import.
ENTRY_ONLY = {"commands": frozenset({"cli"}), "simulator": frozenset({"cli", "commands"})}


def _name(path: Path) -> str:
    """``sources/poller.py`` -> ``sources.poller``; the package's own ``__init__`` -> ``""``."""
    parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> dict[str, str]:
    return {
        _name(path): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _place(module: str) -> str:
    """The folder a module lives in; a top-level module is its own place."""
    return module.split(".", maxsplit=1)[0]


def _imports(module: str, source: str, ours: frozenset[str]) -> Iterator[tuple[str, bool]]:
    """Every import of ``module`` (function-local and TYPE_CHECKING ones too) as (name, ours):
    ours without the ``studio_exporter.`` prefix (the package root as ``""``), others in full."""
    parts = module.split(".") if module else []
    package = parts if any(o.startswith(module + ".") for o in ours) or not module else parts[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _classified(alias.name, ours)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join([ROOT, *base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            for alias in node.names:
                full = _classified(f"{stem}.{alias.name}", ours)
                if full[1] or (_within(full[0], IO_MODULES) and not _within(stem, IO_MODULES)):
                    yield full  # a module of ours, or `from urllib import request`
                else:
                    yield _classified(stem, ours)


def _classified(name: str, ours: frozenset[str]) -> tuple[str, bool]:
    if name == ROOT:
        return "", True
    local = name.removeprefix(ROOT + ".")
    return (local, True) if name.startswith(ROOT + ".") and local in ours else (name, False)


def _within(module: str, places: frozenset[str]) -> bool:
    return any(module == place or module.startswith(place + ".") for place in places)


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every import that breaks a rule, as ``importer -> imported: rule``."""
    ours = frozenset(sources)
    found: list[str] = []
    for module, source in sorted(sources.items()):
        place = _place(module)
        if module and "." not in module and module not in TOP_LEVEL and place not in MAY_IMPORT:
            found.append(f"{module}: a top-level module that is not wiring; put it in a folder")
        if place not in MAY_IMPORT and "." in module:
            found.append(f"{module}: in a folder the layering does not know ({place}/)")
        for imported, is_ours in sorted(set(_imports(module, source, ours))):
            rule = _our_rule(module, imported) if is_ours else _library_rule(module, imported)
            if rule:
                found.append(f"{module} -> {imported}: {rule}")
    return found


def _our_rule(module: str, imported: str) -> str | None:
    place, target = _place(module), _place(imported)
    if imported == "" or place == target or (module, imported) in EXCEPTIONS:
        return None
    if target in ENTRY_ONLY and not _within(module, ENTRY_ONLY[target]):
        return f"only {', '.join(sorted(ENTRY_ONLY[target]))} may import {target}/"
    if place not in MAY_IMPORT or target in MAY_IMPORT[place]:
        return None  # the top level wires everything
    if target not in MAY_IMPORT:
        return f"{place}/ imports the top-level {imported}: the wiring must reach down, not up"
    allowed = ", ".join(f"{p}/" for p in sorted(MAY_IMPORT[place])) or "nothing"
    return f"{place}/ may import {allowed} besides itself, not {target}/"


def _library_rule(module: str, imported: str) -> str | None:
    name = imported
    top = name.split(".", maxsplit=1)[0]
    if _place(module) == "core" and top != "__future__":
        if top not in sys.stdlib_module_names:
            return "the pure core imports the standard library only"
        if _within(name, IO_MODULES):
            return "the pure core does no I/O and reads no clock"
    for library, places in LIBRARIES.items():
        if _within(name, frozenset({library})) and not _within(module, places):
            return f"only {', '.join(sorted(places))} may import {library}"
    return None


def test_the_package_keeps_its_layers() -> None:
    found = violations(package_sources())
    assert not found, "\n".join(found)


def test_every_exception_is_still_needed() -> None:
    sources = package_sources()
    ours = frozenset(sources)
    edges = {(m, i) for m, s in sources.items() for i, _ in _imports(m, s, ours)}
    assert sorted(set(EXCEPTIONS) - edges) == []


def test_the_folders_are_the_documented_ones() -> None:
    folders = {p.parent.name for p in PACKAGE_DIR.glob("*/__init__.py")}
    assert folders == set(MAY_IMPORT)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param(
            {"core.domain": "import httpx"},
            ["core.domain -> httpx: the pure core imports the standard library only"],
            id="core-third-party",
        ),
        pytest.param(
            {"core.domain": "from socket import create_connection"},
            ["core.domain -> socket: the pure core does no I/O and reads no clock"],
            id="core-socket",
        ),
        pytest.param(
            {"core.domain": "import time"},
            ["core.domain -> time: the pure core does no I/O and reads no clock"],
            id="core-clock",
        ),
        pytest.param(
            {"core.domain": "", "sinks.spans": "", "core.transform": "from ..sinks import spans"},
            ["core.transform -> sinks.spans: core/ may import nothing besides itself, not sinks/"],
            id="core-relative-upward",
        ),
        pytest.param(
            {
                "sinks.metrics": "from studio_exporter.sources.poller import Poller",
                "sources.poller": "",
            },
            [
                "sinks.metrics -> sources.poller: sinks/ may import core/ besides itself, "
                "not sources/"
            ],
            id="sink-reaches-back-into-poller",
        ),
        pytest.param(
            {"store.sqlite": "from studio_exporter.sinks import metrics", "sinks.metrics": ""},
            ["store.sqlite -> sinks.metrics: store/ may import core/ besides itself, not sinks/"],
            id="store-imports-sink",
        ),
        pytest.param(
            {"web.server": "from studio_exporter.store.sqlite import Store", "store.sqlite": ""},
            ["web.server -> store.sqlite: web/ may import nothing besides itself, not store/"],
            id="web-imports-store",
        ),
        pytest.param(
            {"sinks.metrics": "from studio_exporter.config import Config", "config": ""},
            [
                "sinks.metrics -> config: sinks/ imports the top-level config: "
                "the wiring must reach down, not up"
            ],
            id="sink-imports-wiring",
        ),
        pytest.param(
            {"sources.poller": "from studio_client.models import Flow"},
            [
                "sources.poller -> studio_client.models: "
                "only sources.studio_api may import studio_client"
            ],
            id="generated-client-outside-rest-source",
        ),
        pytest.param(
            {"sinks.spans": "def f() -> None:\n    import psycopg\n"},
            ["sinks.spans -> psycopg: only store may import psycopg"],
            id="driver-in-a-function",
        ),
        pytest.param(
            {"app": "from studio_exporter.simulator import Simulator", "simulator": ""},
            ["app -> simulator: only cli, commands may import simulator/"],
            id="product-imports-simulator",
        ),
        pytest.param(
            {"helpers": ""},
            ["helpers: a top-level module that is not wiring; put it in a folder"],
            id="new-flat-module",
        ),
        pytest.param(
            {
                "sources.poller": "from studio_exporter.core.domain import Flow\n"
                "from studio_exporter.sinks.metrics import StudioMetrics\n"
                "from studio_exporter.store.protocols import StateStore\n"
                "from studio_exporter import __version__",
                "core.domain": "from datetime import datetime",
                "sinks.metrics": "import prometheus_client",
                "store.protocols": "",
                "": "",
                "app": "from studio_exporter.sources import poller",
            },
            [],
            id="allowed-arrows",
        ),
    ],
)
def test_the_rules_catch_an_upward_arrow(sources: dict[str, str], expected: list[str]) -> None:
    assert violations(sources) == expected
