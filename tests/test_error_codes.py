"""Every error code is declared once, in `sync.errors.CODES`, and the README explains each.

The README's troubleshooting table is read the way a user reads it: the codes in the first
column of each row. Call sites in sync/ name codes through the constants of `sync.errors`,
never as string literals, so a new code cannot appear without an entry in the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sync import errors
from sync.errors import CODES, ImageSyncError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# A code as the README writes it: `CODE`, `CODE: message`, or the `HTTP_<status>` family.
_CODE_IN_CELL = re.compile(r"`(HTTP_<status>|[A-Z][A-Z0-9_]*[A-Z0-9])(?=[`:])")


def troubleshooting_codes(text: str) -> set[str]:
    """The codes in the first column of the table under the README's `## Troubleshooting`."""
    section = text.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| code ", "|---")):
            continue
        first_cell = line.split("|")[1]
        codes |= set(_CODE_IN_CELL.findall(first_cell))
    return codes


def test_the_readme_explains_every_declared_code() -> None:
    explained = troubleshooting_codes(README.read_text(encoding="utf-8"))
    missing = sorted(set(CODES) - explained)
    assert not missing, f"README.md's troubleshooting table has no row for {missing}"


def test_the_readme_names_no_code_that_is_not_declared() -> None:
    explained = troubleshooting_codes(README.read_text(encoding="utf-8"))
    unknown = sorted(explained - set(CODES))
    assert not unknown, f"README.md's troubleshooting table names undeclared codes {unknown}"


def test_the_reader_finds_codes_in_the_first_column_only() -> None:
    text = (
        "intro\n\n## Troubleshooting\n\nprose `SYNC_DEADLINE_SECONDS`\n\n"
        "| code | it means | do |\n|---|---|---|\n"
        "| `USAGE` (exit 2) | `IGNORED` | x |\n"
        "| `failed`, `REFERRERS_LIMIT: more than 256` | y | z |\n"
        "| `BLOB_READ_FAILED`, `HTTP_<status>` | y | z |\n"
        "\n## Next\n\n| `LATER` | a | b |\n"
    )
    assert troubleshooting_codes(text) == {
        "USAGE",
        "REFERRERS_LIMIT",
        "BLOB_READ_FAILED",
        "HTTP_<status>",
    }


def _classes_with_a_code() -> list[type[ImageSyncError]]:
    """The error classes of sync.errors that set `code` themselves (RegistryError computes it)."""
    found: list[type[ImageSyncError]] = []
    pending: list[type[ImageSyncError]] = [ImageSyncError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [
        c for c in found if c.__module__ == "sync.errors" and isinstance(vars(c).get("code"), str)
    ]


@pytest.mark.parametrize("cls", _classes_with_a_code(), ids=lambda c: c.__name__)
def test_each_error_class_gives_a_declared_code_and_its_temporariness(
    cls: type[ImageSyncError],
) -> None:
    code = vars(cls)["code"]
    assert code in CODES, f"{cls.__name__}.code {code!r} is not in sync.errors.CODES"
    declared = CODES[code].temporary
    if declared is not None:
        assert cls.temporary is declared, f"{cls.__name__}.temporary disagrees with CODES"


@pytest.mark.parametrize(
    ("status", "code"),
    [(None, "UNREACHABLE"), (401, "UNAUTHORIZED"), (404, "NOT_FOUND"), (502, "HTTP_502")],
)
def test_registry_errors_without_a_registry_code_map_to_declared_codes(
    status: int | None, code: str
) -> None:
    error = errors.RegistryError("x", status=status)
    assert error.code == code
    family = errors.HTTP_STATUS if code.startswith("HTTP_") else code
    assert family in CODES


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


# `ERROR` is also a logging severity name; the severity tables spell it as a string.
_ALSO_SEVERITIES = {"ERROR"}


def test_code_is_named_through_sync_errors_not_spelled_at_call_sites() -> None:
    spelled = [
        f"sync/{path.name}:{line}: {value!r}"
        for path in sorted((ROOT / "sync").glob("*.py"))
        if path.name != "errors.py"
        for line, value in _string_literals(path)
        if value in CODES and value not in _ALSO_SEVERITIES
    ]
    assert not spelled, "use the constant from sync.errors:\n" + "\n".join(spelled)
