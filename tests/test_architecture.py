"""The house rules, checked on every run.

- Layers (STYLE.md 2): imports point inward only; migrations import none of ours.
- Rooms (STYLE.md 3): each of domain/, application/ and infrastructure/ holds the same capability
  rooms. A room imports only itself, `invoices/` (the shared core) and the kernel (a layer's
  modules outside any room), on its own floor or a lower one. `demo/` may import any room and no
  room imports it. The kernel imports only the kernel and `invoices/`, except the one assembler,
  `infrastructure/bootstrap.py`; in infrastructure, `projections/` (the worker and the SQL
  views) may import the room whose view it writes.
- Names: no two modules of domain/, application/ and infrastructure/ share a name.
- Tests read their data only from the repository.
"""

from __future__ import annotations

import ast
import subprocess
from collections import defaultdict
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
FLOORS = ("domain", "application", "infrastructure")
ROOMS = {"invoices", "monitoring", "remedies", "evidence", "demo"}
SHARED_CORE = "invoices"
ASSEMBLER = "infrastructure.bootstrap"
VIEW_WRITERS = "infrastructure.projections"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def imported_modules(path: Path) -> set[str]:
    """Every module of ours that `path` imports, by full dotted name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in FLOORS and module_path(m) is not None}


def module_path(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def floor_modules() -> list[Path]:
    return sorted(p for floor in FLOORS for p in (ROOT / floor).rglob("*.py"))


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


def allowed_import(importer: str, imported: str) -> bool:
    mine, theirs = room_of(importer), room_of(imported)
    if theirs is None or theirs == SHARED_CORE or theirs == mine:
        return True  # the kernel, the shared core, or my own room
    if importer == ASSEMBLER or mine == "demo":
        return True
    return importer.startswith(VIEW_WRITERS + ".") and theirs != "demo"


def test_rooms_meet_only_through_the_shared_core_and_the_kernel() -> None:
    bad = []
    for path in floor_modules():
        importer = dotted(path)
        for imported in sorted(imported_modules(path)):
            if not allowed_import(importer, imported):
                bad.append(f"{importer} imports {imported}")
    assert not bad, "\n".join(bad)


def test_every_room_is_a_package_with_a_docstring_and_no_re_exports() -> None:
    for floor in FLOORS:
        for room in (ROOT / floor).iterdir():
            if room.name not in ROOMS:
                continue
            init = room / "__init__.py"
            assert init.exists(), init
            tree = ast.parse(init.read_text(encoding="utf-8"))
            assert ast.get_docstring(tree), f"{init.relative_to(ROOT)} needs a docstring"
            assert all(isinstance(n, ast.Expr) for n in tree.body), f"{init} re-exports"


def test_no_two_modules_of_the_inner_floors_share_a_name() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in floor_modules():
        if path.name != "__init__.py":
            by_name[path.stem].append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not shared, shared


def test_tests_never_read_outside_the_repository() -> None:
    """A fresh clone has nothing beside it: no test may name ../shared (or shared/)."""
    listed = subprocess.run(
        ["git", "grep", "-n", "-I", "shared/", "--", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # This file names the pattern it looks for; every other hit is a test reaching outside.
    hits = [h for h in listed.stdout.splitlines() if not h.startswith("tests/test_architecture.py")]
    assert not hits, "\n".join(hits)
    for path in (ROOT / "tests").rglob("*"):
        if path.is_file() and path.suffix in {".py", ".json", ".csv", ".txt", ".toml", ".cfg"}:
            if path.name == "test_architecture.py":
                continue
            assert "shared/" not in path.read_text(encoding="utf-8", errors="replace"), path
