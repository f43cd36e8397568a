"""The access table as a document: ``RULES`` as the Markdown table of docs/access.md
(``guanai access-table`` prints it; a test keeps the file equal)."""

from __future__ import annotations

from api.access.rules import DOCS_PATH, ROLE_CODES, ROLES, RULES, WEB_STATIC_PATH, Rule, Scope

SCOPE_WORDS = {
    Scope.ANY: "any",
    Scope.ALL: "all",
    Scope.SUBTREE: "subtree",
    Scope.OWN: "own",
    Scope.REPORTER: "reporter",
    Scope.AREA: "area",
}


def _cell(scopes: frozenset[Scope] | None) -> str:
    if not scopes:
        return "–"
    return " + ".join(SCOPE_WORDS[s] for s in Scope if s in scopes)


def _objects(rule: Rule) -> str:
    parts = []
    if rule.target is not None:
        parts.append(f"{'query' if rule.target.in_query else 'path'} `{rule.target.param}`: {rule.target.kind}")
    for ref in rule.refs:
        whose = "" if ref.scope is None else " (as readable)"
        parts.append(f"body `{ref.field}`: {ref.kind}{whose}")
    if rule.creates is not None:
        parts.append(f"body `id`: {rule.creates} (taken: as readable)")
    if rule.lists is not None:
        parts.append(f"lists {rule.lists}s in scope")
    if rule.filters:
        parts.append("filters " + ", ".join(f"`{f.field}`" for f in rule.filters))
    if rule.checked_as:
        parts.append(f"each item checked as {rule.checked_as}")
    if rule.checked_with_read:
        parts.append("checked inside the read where the first event decides")
    return "; ".join(parts)


def access_table() -> str:
    """``RULES`` as the Markdown table of docs/access.md (kept equal by a test)."""
    head = ["operation", "resource", "action", *(ROLE_CODES[r] for r in ROLES), "objects checked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rule in RULES:
        path = rule.path + ("/…" if rule.path in (DOCS_PATH, WEB_STATIC_PATH) else "")
        cells = ["public"] * len(ROLES) if rule.public else [_cell(rule.grants.get(r)) for r in ROLES]
        row = [f"`{rule.method} {path}`", rule.resource, rule.action, *cells, _objects(rule)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
