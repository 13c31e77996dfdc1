"""Imports inside edge/ run one way: no module imports one that imports it back (issue 19, item 19).

Every import counts, also those inside functions (a deferred import hides a circle from Python, not
from the reader: the two modules still cannot be understood or changed apart).
"""
from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parents[1] / "edge"

# Circles another branch is breaking; remove an entry when its branch is merged; any other circle fails the test.
# (encoders <-> trt_backend, issue 19 item 19: broken by the keywords branch, pad_features now in edge.model_io.)
BEING_BROKEN_ELSEWHERE: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(EDGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """edge module -> the edge modules it imports anywhere in its file."""
    modules = {module_name(p): p for p in EDGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in modules:
                    deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        graph[name] = deps - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset({"a", "b", "c"})}
    assert circles({"a": {"b"}, "b": set()}) == set()


def test_edge_has_no_import_circles():
    found = circles(import_graph())
    unexpected = sorted(sorted(c) for c in found - BEING_BROKEN_ELSEWHERE)
    assert not unexpected, f"import circles in edge/: {unexpected}"


def test_config_does_not_import_the_service():
    graph = import_graph()
    assert "edge.service" not in graph["edge.config"]
    assert "edge.service_settings" in graph["edge.config"]
