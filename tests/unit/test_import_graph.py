"""The package map of docs/architecture.md, enforced: no import cycles and no layer violations.

Every import counts, including lazy ones inside functions and those under ``TYPE_CHECKING``: a
cycle hidden by a lazy import is still a cycle for whoever reads the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Layers of noderuntime/, lowest first. A module may import its own package and any package of a
# lower layer, never a package of its own layer or above. Keep in step with docs/architecture.md.
LAYERS: list[set[str]] = [
    {""},  # the package root: errors, version
    {"config", "identity"},
    {"crdt", "spec", "runtime", "audit"},
    {"rollout"},
    {"reconcile", "fleet", "fleetops"},
    {"sync"},
    {"site"},
    {"api"},
    {"host"},
    {"node"},
    {"cli"},
]
# What the TUI may use of the core: the API client and its wire types, and errors.
TUI_ALLOWED = {
    "noderuntime",
    "noderuntime.errors",
    "noderuntime.api.client",
    "noderuntime.api.protocol",
}


# Debts being paid off in this restructuring; each entry goes when its seam lands.
KNOWN_CYCLES: list[list[str]] = []
KNOWN_VIOLATIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in ("noderuntime", "tui"):
        for path in (ROOT / top).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        for target in targets:
            if target.split(".")[0] in ("noderuntime", "tui") and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) & set(known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def _layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    package = parts[1] if len(parts) > 2 or (len(parts) == 2 and _is_package(parts[1])) else ""
    for rank, names in enumerate(LAYERS):
        if package in names:
            return rank, package
    raise AssertionError(f"{module}: package {package!r} is in no layer; add it to LAYERS")


def _is_package(name: str) -> bool:
    return (ROOT / "noderuntime" / name / "__init__.py").exists()


def test_there_are_modules_to_check() -> None:
    graph = _graph()
    assert "noderuntime.errors" in graph and "tui.app" in graph
    assert sum(len(deps) for deps in graph.values()) > 100


def test_no_import_cycles() -> None:
    assert [c for c in _cycles(_graph()) if c not in KNOWN_CYCLES] == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_core_package_has_a_layer() -> None:
    for module in _graph():
        if module.startswith("noderuntime"):
            _layer(module)


def test_core_imports_point_inward() -> None:
    violations = []
    for module, deps in _graph().items():
        if not module.startswith("noderuntime"):
            continue
        rank, package = _layer(module)
        for dep in deps:
            if dep.startswith("tui"):
                if package != "cli":
                    violations.append(f"{module} -> {dep}: only the CLI starts the TUI")
                continue
            dep_rank, dep_package = _layer(dep)
            if dep_package == package:
                continue
            if dep_rank >= rank:
                violations.append(f"{module} (layer {rank}) -> {dep} (layer {dep_rank})")
    assert [v for v in violations if v not in KNOWN_VIOLATIONS] == []


def test_tui_uses_only_the_api_client_and_errors() -> None:
    violations = [
        f"{module} -> {dep}"
        for module, deps in _graph().items()
        if module.startswith("tui")
        for dep in deps
        if dep.startswith("noderuntime") and dep not in TUI_ALLOWED
    ]
    assert violations == []
