"""Every example config in docs/examples validates, and the layers keep their boundaries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from moorage.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path) -> None:
    load_settings(path)


def test_there_are_examples() -> None:
    assert EXAMPLES


def _imports(package: Path) -> set[str]:
    found: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (
            "services",
            (
                "starlette",
                "sqlalchemy",
                "granian",
                "moorage.api",
                "moorage.storage.filesystem",
                "moorage.metadata.sql",
            ),
        ),
        (
            "oci",
            (
                "starlette",
                "sqlalchemy",
                "os",
                "pathlib",
                "moorage.storage",
                "moorage.metadata",
                "moorage.services",
            ),
        ),
        ("storage", ("starlette", "sqlalchemy", "moorage.services", "moorage.api")),
        ("metadata", ("starlette", "moorage.services", "moorage.api")),
        # Events and the audit trail: no HTTP framework, no SQL (their tables are metadata's).
        ("events", ("starlette", "sqlalchemy", "moorage.api", "moorage.metadata")),
        ("audit", ("starlette", "sqlalchemy", "moorage.api", "moorage.metadata")),
        # The UI calls services and the gate; it never reads the database or storage itself.
        (
            "web",
            (
                "sqlalchemy",
                "moorage.api",
                "moorage.storage",
                "moorage.metadata.sql",
                "moorage.metadata.browse_sql",
                "moorage.metadata.schema",
            ),
        ),
    ],
)
def test_layers_do_not_import_what_they_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    imports = _imports(ROOT / "src" / "moorage" / package)
    crossing = sorted(i for i in imports if any(i == f or i.startswith(f + ".") for f in forbidden))
    assert crossing == []
