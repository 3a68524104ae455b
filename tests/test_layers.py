"""Keeps DESIGN.md's layers honest: inside sync/, imports flow only from the bottom up.

Reads each sync/*.py with `ast` (nothing is imported) and collects every import in it: at the
top, inside functions, under TYPE_CHECKING, absolute or relative. A module may import modules of
its own layer or lower ones, and none of the packages its layer is denied, neither itself nor
through the sync/ modules it imports (directly or in turn). A module missing from
the layer table fails the test until it is placed there, so every new module is classified on
purpose; modules in the table that do not exist yet are simply not checked.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sync"
PACKAGE_DIR = ROOT / PACKAGE

# Bottom to top (DESIGN.md "Shape"); main.py sits above all of them.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("errors", frozenset({"__init__", "errors", "login"})),
    ("reference", frozenset({"reference"})),
    ("oci", frozenset({"oci"})),
    ("registry", frozenset({"retry", "auth", "registry"})),
    ("copy", frozenset({"copy", "referrers"})),
    ("config", frozenset({"config", "credentials", "secrets", "versions"})),
    ("report", frozenset({"report"})),
    ("engine", frozenset({"engine"})),
    ("cli", frozenset({"cli", "__main__", "fanout", "logs", "progress", "request", "service"})),
)
LAYER_OF: dict[str, int] = {m: i for i, (_, modules) in enumerate(LAYERS) for m in modules}
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _ in LAYERS)

_ARGV_AND_WEB = frozenset({"argparse", "flask", "werkzeug", "functions_framework"})


def forbidden_imports(module: str) -> frozenset[str]:
    """Top-level packages (or `sync.x` modules) that `module` must not import."""
    layer = LAYER_NAMES[LAYER_OF[module]]
    forbidden: set[str] = set()
    if LAYER_OF[module] < LAYER_NAMES.index("cli"):
        forbidden |= _ARGV_AND_WEB  # argv and the HTTP adapter belong to cli and main.py
    if layer in ("errors", "reference", "oci"):
        forbidden.add("httpx")  # no I/O, no HTTP
    if layer in ("config", "report"):
        forbidden.add("httpx")  # config/credentials/secrets never call registries; pure values
    if module in ("copy", "referrers"):
        forbidden.add(f"{PACKAGE}.config")  # also implied by the layer order
    if module == "engine":
        forbidden.add("argparse")  # also implied by the rule for everything below cli
    return frozenset(forbidden)


@dataclass(frozen=True)
class Import:
    """What one import names: a module of sync/ (`internal`) or an outside package."""

    line: int
    text: str
    internal: str | None = None  # "__init__" for the package itself
    external: str | None = None  # top-level name, or the dotted form of an escaping import


def imports_of(source: str) -> list[Import]:
    """Every import in `source`, a file directly in sync/, resolved to what it names.

    `from sync import x` and `from . import x` name module x when x is a module (in the table or
    in sync/), else a name defined by sync/__init__.py.
    """
    known = set(LAYER_OF) | {path.stem for path in PACKAGE_DIR.glob("*.py")}
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                text = f"import {alias.name}"
                top, _, rest = alias.name.partition(".")
                if top == PACKAGE:
                    found.append(Import(node.lineno, text, internal=rest.split(".")[0] or None))
                else:
                    found.append(Import(node.lineno, text, external=top))
        elif isinstance(node, ast.ImportFrom):
            dotted = node.module or ""
            text = f"from {'.' * node.level}{dotted} import {', '.join(a.name for a in node.names)}"
            if node.level == 0:
                top, _, rest = dotted.partition(".")
                if top != PACKAGE:
                    found.append(Import(node.lineno, text, external=top))
                    continue
            elif node.level == 1:  # relative to sync/
                rest = dotted
            else:  # climbs out of the package
                found.append(Import(node.lineno, text, external="." * node.level + dotted))
                continue
            if rest:
                found.append(Import(node.lineno, text, internal=rest.split(".")[0]))
            else:
                for alias in node.names:
                    name = alias.name if alias.name in known else "__init__"
                    found.append(Import(node.lineno, text, internal=name))
    # `import sync` alone names the package itself.
    return [i if i.internal or i.external else Import(i.line, i.text, "__init__") for i in found]


def _describe(module: str) -> str:
    return f"{PACKAGE}.{module} (layer {LAYER_OF[module]}, {LAYER_NAMES[LAYER_OF[module]]})"


MODULES = sorted(path.stem for path in PACKAGE_DIR.glob("*.py"))


def _imports(module: str) -> list[Import]:
    return imports_of((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))


def test_the_package_is_where_the_test_looks() -> None:
    assert (PACKAGE_DIR / "__init__.py").exists(), f"no package at {PACKAGE_DIR}"
    assert {"errors", "reference"} <= set(MODULES), f"the bottom layers are missing: {MODULES}"


def test_the_package_has_no_subpackages() -> None:
    subpackages = [p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()]
    assert not subpackages, (
        f"{PACKAGE}/ has subpackages {subpackages}; this test reads {PACKAGE}/*.py only: "
        "teach tests/test_layers.py about them"
    )


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_a_layer(module: str) -> None:
    assert module in LAYER_OF, (
        f"{PACKAGE}/{module}.py is in no layer: place it in LAYERS in tests/test_layers.py "
        "(see DESIGN.md 'Shape') so that its imports are checked"
    )


def layer_problems(module: str, imports: list[Import]) -> list[str]:
    """One line per import of `module` that goes up the layers or to an unclassified module."""
    problems: list[str] = []
    for imp in imports:
        where = f"{PACKAGE}/{module}.py:{imp.line} `{imp.text}`"
        if imp.internal is None:
            if imp.external and imp.external.startswith(".."):
                problems.append(f"{where}: a relative import that leaves the package")
        elif imp.internal not in LAYER_OF:
            problems.append(
                f"{where}: {_describe(module)} imports {PACKAGE}.{imp.internal}, which is in no "
                "layer: place it in LAYERS"
            )
        elif LAYER_OF[imp.internal] > LAYER_OF[module]:
            problems.append(
                f"{where}: {_describe(module)} imports {_describe(imp.internal)}, a higher layer"
            )
    return problems


def denied_problems(module: str, imports: list[Import]) -> list[str]:
    """One line per import of `module` that its layer is denied (see `forbidden_imports`)."""
    forbidden = forbidden_imports(module)
    problems: list[str] = []
    for imp in imports:
        where = f"{PACKAGE}/{module}.py:{imp.line} `{imp.text}`"
        named = imp.external if imp.external is not None else f"{PACKAGE}.{imp.internal}"
        if named in forbidden:
            problems.append(f"{where}: {_describe(module)} must not import {named}")
        if named == "main":
            problems.append(f"{where}: {_describe(module)} imports main.py, which is above cli")
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_its_own_or_lower_layers(module: str) -> None:
    if module not in LAYER_OF:
        pytest.skip("in no layer; test_every_module_has_a_layer reports it")
    problems = layer_problems(module, _imports(module))
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_nothing_its_layer_is_denied(module: str) -> None:
    if module not in LAYER_OF:
        pytest.skip("in no layer; test_every_module_has_a_layer reports it")
    problems = denied_problems(module, _imports(module))
    assert not problems, "forbidden imports:\n" + "\n".join(problems)


def reached_imports(
    module: str, read: Callable[[str], list[Import]]
) -> list[tuple[tuple[str, ...], Import]]:
    """Every import `module` makes through the sync/ modules it imports, each with its path.

    A path is the chain of sync/ modules from `module` to the one that makes the import; each
    module is visited once, by its shortest chain. The module's own imports are not included:
    `denied_problems` reports those.
    """
    reached: list[tuple[tuple[str, ...], Import]] = []
    seen = {module}
    queue: deque[tuple[str, ...]] = deque([(module,)])
    while queue:
        chain = queue.popleft()
        for imp in read(chain[-1]):
            if len(chain) > 1:
                reached.append((chain, imp))
            if imp.internal is not None and imp.internal not in seen:
                seen.add(imp.internal)
                queue.append((*chain, imp.internal))
    return reached


def transitive_denied_problems(module: str, read: Callable[[str], list[Import]]) -> list[str]:
    """One line per denied package `module` reaches through the sync/ modules it imports."""
    forbidden = forbidden_imports(module)
    problems: list[str] = []
    for chain, imp in reached_imports(module, read):
        named = imp.external if imp.external is not None else f"{PACKAGE}.{imp.internal}"
        if named in forbidden:
            via = " -> ".join(f"{PACKAGE}.{m}" for m in chain)
            problems.append(
                f"{via}:{imp.line} `{imp.text}`: {_describe(module)} must not import {named}, "
                "not even through another module"
            )
    return problems


def _existing_imports(module: str) -> list[Import]:
    return _imports(module) if (PACKAGE_DIR / f"{module}.py").exists() else []


@pytest.mark.parametrize("module", MODULES)
def test_module_reaches_nothing_its_layer_is_denied_through_other_modules(module: str) -> None:
    if module not in LAYER_OF:
        pytest.skip("in no layer; test_every_module_has_a_layer reports it")
    problems = transitive_denied_problems(module, _existing_imports)
    assert not problems, "forbidden imports, reached transitively:\n" + "\n".join(problems)


def test_main_py_imports_only_classified_sync_modules() -> None:
    path = ROOT / "main.py"
    if not path.exists():
        pytest.skip("main.py does not exist yet")
    problems = [
        f"main.py:{imp.line} `{imp.text}`: {PACKAGE}.{imp.internal} is in no layer"
        for imp in imports_of(path.read_text(encoding="utf-8"))
        if imp.internal is not None and imp.internal not in LAYER_OF
    ]
    assert not problems, "\n".join(problems)


# --- the checker itself: a test that sees no imports would pass vacuously -----------------

CHECKER_CASES: list[tuple[str, list[tuple[str | None, str | None]]]] = [
    ("import sync", [("__init__", None)]),
    ("import sync.errors", [("errors", None)]),
    ("import sync.registry.client as c", [("registry", None)]),
    ("from sync import errors, __version__", [("errors", None), ("__init__", None)]),
    ("from sync.copy import copy_image", [("copy", None)]),
    ("from . import engine", [("engine", None)]),
    ("from . import __version__", [("__init__", None)]),
    ("from .config import Config", [("config", None)]),
    ("from .newthing import x", [("newthing", None)]),
    ("from ..other import x", [(None, "..other")]),
    ("import httpx", [(None, "httpx")]),
    ("import os.path, json", [(None, "os"), (None, "json")]),
    ("from flask import Request", [(None, "flask")]),
    ("from syncer import x", [(None, "syncer")]),
    ("def f() -> None:\n    import argparse", [(None, "argparse")]),
    ("if TYPE_CHECKING:\n    from sync import cli", [("cli", None)]),
]


@pytest.mark.parametrize(("source", "expected"), CHECKER_CASES, ids=[c[0] for c in CHECKER_CASES])
def test_checker_resolves_each_kind_of_import(
    source: str, expected: list[tuple[str | None, str | None]]
) -> None:
    assert [(i.internal, i.external) for i in imports_of(source)] == expected


VIOLATIONS = [
    (
        "copy",
        "from sync.engine import run",
        "sync.copy (layer 4, copy) imports sync.engine (layer 7",
    ),
    (
        "copy",
        "from .config import Config",
        "sync.copy (layer 4, copy) imports sync.config (layer 5",
    ),
    ("errors", "from sync import reference", "imports sync.reference (layer 1, reference)"),
    ("registry", "import sync.credentials", "imports sync.credentials (layer 5, config)"),
    ("versions", "from sync.report import Report", "imports sync.report (layer 6, report)"),
    ("report", "from . import engine", "sync.report (layer 6, report) imports sync.engine"),
    ("engine", "from sync.cli import main", "imports sync.cli (layer 8, cli), a higher layer"),
    ("engine", "from sync.newthing import x", "sync.newthing, which is in no layer"),
    ("engine", "from ..elsewhere import x", "leaves the package"),
]


@pytest.mark.parametrize(
    ("module", "source", "message"), VIOLATIONS, ids=[v[1] for v in VIOLATIONS]
)
def test_checker_reports_an_upward_import_naming_both_modules_and_layers(
    module: str, source: str, message: str
) -> None:
    problems = layer_problems(module, imports_of(source))
    assert len(problems) == 1, problems
    assert message in problems[0]
    assert source in problems[0], "the message quotes the import"


def test_checker_allows_same_and_lower_layers() -> None:
    source = "from sync import errors, reference\nfrom . import config, secrets\nimport httpx\n"
    assert layer_problems("credentials", imports_of(source)) == []


DENIED = [
    ("config", "import httpx"),
    ("credentials", "from httpx import Client"),
    ("secrets", "import httpx"),
    ("versions", "import httpx"),
    ("report", "import httpx"),
    ("errors", "import httpx"),
    ("reference", "import httpx"),
    ("oci", "import httpx"),
    ("engine", "import argparse"),
    ("copy", "from flask import Request"),
    ("registry", "import functions_framework"),
    ("report", "from werkzeug import Response"),
    ("copy", "from sync.config import Config"),
    ("engine", "import main"),
]


@pytest.mark.parametrize(("module", "source"), DENIED, ids=[f"{m}: {s}" for m, s in DENIED])
def test_checker_reports_a_denied_import(module: str, source: str) -> None:
    problems = denied_problems(module, imports_of(source))
    assert problems, f"{module} must not be allowed `{source}`"
    assert f"sync.{module} (layer" in problems[0]


def test_checker_reports_a_denied_import_reached_through_another_module() -> None:
    sources = {
        "credentials": "from sync import errors\nfrom sync.auth import Credentials\n",
        "errors": "import json\n",
        "auth": "from sync.retry import send\n",
        "retry": "import httpx\n",
    }
    problems = transitive_denied_problems("credentials", lambda m: imports_of(sources[m]))
    assert len(problems) == 1, problems
    assert problems[0].startswith("sync.credentials -> sync.auth -> sync.retry:1 `import httpx`")
    assert "sync.credentials (layer 5, config) must not import httpx" in problems[0]


def test_checker_allows_what_lower_modules_may_import() -> None:
    sources = {"registry": "from sync import retry\n", "retry": "import httpx\n"}
    assert transitive_denied_problems("registry", lambda m: imports_of(sources[m])) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [("registry", "import httpx"), ("cli", "import argparse"), ("__main__", "import argparse")],
)
def test_checker_allows_what_the_layer_needs(module: str, source: str) -> None:
    assert denied_problems(module, imports_of(source)) == []
