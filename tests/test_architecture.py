"""The dependency rule (STYLE.md 2): imports point inward only; migrations import none of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"domain", "application", "infrastructure", "api", "migrations"}
ALLOWED = {
    "domain": {"domain"},
    "application": {"domain", "application"},
    "infrastructure": {"domain", "application", "infrastructure"},
    "api": {"domain", "application", "infrastructure", "api"},
    "migrations": set(),
}
# Third-party packages each inner layer may not touch.
FORBIDDEN_THIRD_PARTY = {
    "domain": {"fastapi", "psycopg", "sqlalchemy", "orjson", "alembic", "typer", "pydantic"},
    "application": {"fastapi", "psycopg", "sqlalchemy", "orjson", "alembic", "typer"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_inward(layer: str) -> None:
    for path in (ROOT / layer).rglob("*.py"):
        found = imports(path)
        bad = (found & OURS) - ALLOWED[layer]
        bad |= found & FORBIDDEN_THIRD_PARTY.get(layer, set())
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_domain_uses_only_the_librarys_modelling_toolkit() -> None:
    for path in (ROOT / "domain").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eventsourcing"):
                assert node.module == "eventsourcing.domain", path
