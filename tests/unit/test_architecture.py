"""Imports point inward (style.md), checked on the source with no exemption by file name:

    domain/ ← application/ ← infrastructure/ ← projections/, api/, workers/ ← web/ ← guanai/

A package imports its own layer and the layers below it only; among the edges, api/ and workers/
may import projections/ (the views), and neither imports the other. web/ (the pages) stands on
api/: its pages pass the API's one guard and share its helpers, so there is no second
authorization path; api/ does not import it (the bootstrap hands the pages to the app). domain/ imports
only the standard library, msgspec and the eventsourcing domain. No module imports one of the
project's modules inside a function (the CLI's dispatch uses importlib, not an import
statement), and the module graph has no cycle."""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
LAYERS = {
    "domain": 0,
    "application": 1,
    "infrastructure": 2,
    "projections": 3,
    "api": 3,
    "workers": 3,
    "web": 4,
    "guanai": 5,
}
OWN = set(LAYERS)
# Among the edges (layer 3), what each may import of the others.
EDGE_IMPORTS = {"projections": set(), "api": {"projections"}, "workers": {"projections"}}


@functools.cache
def parsed(path: Path) -> tuple[str, ast.Module]:
    text = path.read_text()
    return text, ast.parse(text, filename=str(path))


def sources() -> list[Path]:
    return [p for package in LAYERS if (ROOT / package).is_dir() for p in sorted((ROOT / package).rglob("*.py"))]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from pkg import module` imports the submodule: name it, where it is one.
        names = [node.module]
        for alias in node.names:
            candidate = f"{node.module}.{alias.name}"
            if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                ROOT / Path(*candidate.split("."))
            ).is_dir():
                names.append(candidate)
        return names
    return []


def top(module: str) -> str:
    return module.split(".")[0]


def module_level_imports(path: Path) -> list[str]:
    """Imports that run when the module is imported (not those under ``if TYPE_CHECKING:``)."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            found.extend(imported(node))
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt | ast.excepthandler)])  # type: ignore[misc]

    visit(parsed(path)[1].body)
    return found


def all_imports(path: Path) -> list[tuple[int, str]]:
    tree = parsed(path)[1]
    return [(node.lineno, name) for node in ast.walk(tree) for name in imported(node)]  # type: ignore[attr-defined]


def test_domain_imports_only_the_standard_library_msgspec_and_the_eventsourcing_domain() -> None:
    bad = [
        (p.name, m)
        for p in sorted((ROOT / "domain").rglob("*.py"))
        for _, m in all_imports(p)
        if top(m) not in STDLIB | {"domain", "msgspec"} and m != "eventsourcing.domain"
    ]
    assert not bad, f"domain/ imports outward: {bad}"


@pytest.mark.parametrize("package", [p for p in LAYERS if (ROOT / p).is_dir()])
def test_a_package_imports_only_its_own_layer_and_the_layers_below(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, m in all_imports(path):
            other = top(m)
            if other not in OWN or other == package:
                continue
            if LAYERS[other] > LAYERS[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {m} (a higher layer)")
            elif LAYERS[other] == LAYERS[package] and other not in EDGE_IMPORTS.get(package, set()):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {m} (another edge)")
    assert not bad, "\n".join(bad)


def test_no_module_imports_the_projects_own_modules_inside_a_function() -> None:
    bad = []
    for path in sources():
        for fn in ast.walk(parsed(path)[1]):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    bad += [f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in imported(node) if top(m) in OWN]  # type: ignore[attr-defined]
    assert not bad, "imports hidden in functions (they hide cycles):\n" + "\n".join(sorted(set(bad)))


def test_the_module_graph_has_no_cycle() -> None:
    modules = {module_name(p): p for p in sources()}
    graph = {
        name: {m for m in module_level_imports(path) if m in modules and m != name} for name, path in modules.items()
    }
    # A package's __init__ runs before its submodules: importing pkg.mod depends on pkg.
    for name in modules:
        parent = name.rpartition(".")[0]
        while parent:
            if parent in modules and parent != name:
                graph[name].discard(parent)  # not an edge of its own: only explicit imports count
            parent = parent.rpartition(".")[0]
    cycles = strongly_connected(graph)
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_check_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_one_place_builds_the_application() -> None:
    """guanai/bootstrap.py alone constructs CareApplication (tests build theirs through it too)."""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sources()
        for node in ast.walk(parsed(path)[1])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "CareApplication"
    ]
    assert calls == [c for c in calls if c.startswith("guanai/bootstrap.py:")] and len(calls) == 1, calls


def test_nothing_connects_at_import_time() -> None:
    """Module bodies create no pools, servers or connections: only functions and classes do."""
    suspicious = ("ConnectionPool(", "connect(", "get_server(", "Popen(", "CareApplication(")
    for path in sources():
        lines = parsed(path)[0].splitlines()
        for node in parsed(path)[1].body:
            if isinstance(node, (ast.Assign, ast.Expr, ast.AnnAssign)) and node.end_lineno is not None:
                segment = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                assert not any(s in segment for s in suspicious), f"{path.name}: {segment[:80]}"


# A statement as the code writes one: a keyword opening a string (a fragment such as a WHERE
# clause handed to a view is the view's to write, so it counts too).
SQL_TEXT = re.compile(
    r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX|UNIQUE INDEX)|ALTER TABLE|DROP TABLE|"
    r"TRUNCATE|WITH \w+ AS|LOCK TABLE)\b|\b(WHERE|ORDER BY|ON CONFLICT)\b.*%s"
)


def sql_in(source: str) -> list[str]:
    """Where a module writes SQL: a string that is a statement, a call of ``execute``, an import of
    psycopg (its ``sql`` composes statements; the pool, a handle the views are opened with, is not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
            found.append(f"{node.lineno}: {node.value.strip()[:40]!r}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"execute", "executemany", "copy"}
        ):
            found.append(f"{node.lineno}: .{node.func.attr}()")
        found += [f"{node.lineno}: imports {m}" for m in imported(node) if top(m) == "psycopg"]  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize("package", ["api", "web"])
def test_the_http_layer_holds_no_sql(package: str) -> None:
    """Handlers and the pages read through the views and the application: SQL lives in
    projections/ and infrastructure/."""
    bad = [
        f"{p.relative_to(ROOT)}:{where}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for where in sql_in(p.read_text())
    ]
    assert not bad, "SQL in the HTTP layer:\n" + "\n".join(bad)


def test_the_sql_check_finds_sql() -> None:
    assert sql_in('Q = """\nSELECT id FROM reg_persons"""') == ["1: 'SELECT id FROM reg_persons'"]
    assert sql_in("conn.execute(q)") == ["1: .execute()"]
    assert sql_in("from psycopg import sql") == ["1: imports psycopg"]
    assert sql_in('f = {"status = %s": s}; g = "WHERE org_path @> %s"') == ["1: 'WHERE org_path @> %s'"]
    assert sql_in('"""Select the rows a caller may see, ordered by name."""') == []
