"""Imports point inward (style.md): domain/ depends on nothing of ours and no infrastructure;
projections/ on domain/; nothing but the composition root imports api/ or workers/."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def test_domain_imports_only_the_standard_library_msgspec_and_the_eventsourcing_domain() -> None:
    bad = [
        (p.name, m)
        for p, m in imports("domain")
        if top(m) not in STDLIB | {"domain", "msgspec"} and m != "eventsourcing.domain"
    ]
    assert not bad, f"domain/ imports outward: {bad}"


def test_projections_import_no_api_workers_or_composition() -> None:
    bad = [(p.name, m) for p, m in imports("projections") if top(m) in {"api", "workers", "guanai"}]
    assert not bad, f"projections/ imports outward: {bad}"


@pytest.mark.parametrize(
    "package", ["domain", "application", "infrastructure", "projections", "api", "workers", "guanai"]
)
def test_only_the_composition_root_imports_api_and_workers(package: str) -> None:
    bad = [
        (p.name, m)
        for p, m in imports(package)
        if top(m) in {"api", "workers"} - {package} and "cli" not in p.relative_to(ROOT).parts
    ]
    assert not bad, f"{package}/ imports api/ or workers/: {bad}"


def test_nothing_connects_at_import_time() -> None:
    """Module bodies create no pools, servers or connections: only functions and classes do."""
    suspicious = ("ConnectionPool(", "connect(", "get_server(", "Popen(", "CareApplication(")
    for package in ("domain", "application", "infrastructure", "projections", "api", "workers", "guanai"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, (ast.Assign, ast.Expr, ast.AnnAssign)):
                    text = ast.get_source_segment(path.read_text(), node) or ""
                    assert not any(s in text for s in suspicious), f"{path.name}: {text[:80]}"
