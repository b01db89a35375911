"""The import arrows run one way: cli -> jobs -> (mappings, connector); the emulator never uses the client.

Imports are read with ``ast`` from the source files (module level and inside functions alike), so
a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT_SIDE = ("connector.client", "connector.keyset", "connector.retry", "connector.transport", "connector.auth", "connector.ratelimit")


def module_name(path: Path) -> str:
    """``connector/emulator/app.py`` -> ``connector.emulator.app`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module the file at ``path`` imports, anywhere in it."""
    return imports_in(path.read_text(encoding="utf-8"), path)


def imports_in(source: str, path: Path) -> set[str]:
    """Every module ``source`` (the text of ``path``) imports; relative imports resolved, ``from a import b`` as ``a`` and ``a.b``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def sources(package: str) -> list[Path]:
    """The Python files of a top-level package."""
    return sorted((ROOT / package).rglob("*.py"))


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def offending(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)} imports {target}"
        for path in files
        for target in imports_of(path)
        if any(within(target, prefix) for prefix in forbidden)
    )


def test_the_packages_are_where_the_rules_look():
    for package in ("connector", "jobs", "mappings"):
        assert sources(package), package
    assert any(path.parts[-2] == "emulator" for path in sources("connector"))


def test_the_connector_imports_nothing_from_jobs_or_mappings():
    assert offending(sources("connector"), ("jobs", "mappings")) == []


def test_the_emulator_imports_nothing_from_the_client_side():
    emulator = [path for path in sources("connector") if "emulator" in path.relative_to(ROOT).parts]
    assert offending(emulator, CLIENT_SIDE) == []


def test_mappings_import_nothing_from_jobs():
    assert offending(sources("mappings"), ("jobs",)) == []


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("import jobs.cli", "connector/x.py", {"jobs.cli"}),
        ("def f():\n    from jobs import portal\n", "connector/x.py", {"jobs", "jobs.portal"}),
        ("from ..client import Bitrix24Client", "connector/emulator/x.py", {"connector.client", "connector.client.Bitrix24Client"}),
        ("from . import retry", "connector/x.py", {"connector", "connector.retry"}),
        ("from .methods import batch", "connector/emulator/__init__.py", {"connector.emulator.methods", "connector.emulator.methods.batch"}),
    ],
    ids=["plain", "inside-a-function", "relative-parent", "relative-sibling", "relative-in-init"],
)
def test_imports_are_found_wherever_they_hide(source, where, expected):
    assert imports_in(source, ROOT / where) == expected
