"""The package layout: imports point one way, and the top of `rationale/` stays small.

The import graph is read from the source with `ast` (every import, module-level or inside a
function: a lazy import is still a dependency), never by importing the code.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bird", "rationale", "training")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, `from a import b` resolved to `a.b` when b is a
    module."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {module for module in found if module in modules and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _unit(module: str) -> str:
    """A package's subpackage or top-level module: `rationale.stages.seed` ->
    `rationale.stages`, `rationale.config` -> itself, `bird.demo.build` -> `bird.demo`."""
    return ".".join(module.split(".")[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _unit_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            # a package's own __init__ is not a unit apart from its modules
            if _unit(module) != _unit(target) and "." in module and "." in target:
                edges[_unit(module)].add(_unit(target))
    return edges


def test_the_import_graph_reads_a_real_loop_when_one_exists() -> None:
    """The checker finds a loop it is shown (so its silence below means something)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert (
        "rationale.stages.seed" in graph["rationale.stages.distill"] | graph["rationale.registry"]
    )
    assert "rationale.run_dir" in graph["rationale.stages.seed"]


def test_no_import_loop_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_import_loop_between_subpackages_or_top_level_modules() -> None:
    assert _cycles(_unit_edges(_graph())) == []


def test_packages_point_one_way() -> None:
    """bird imports nothing of the project; training nothing of rationale (a GPU node trains
    from a dataset folder alone)."""
    graph = _graph()
    for module, targets in graph.items():
        top = module.split(".")[0]
        tops = {target.split(".")[0] for target in targets}
        if top == "bird":
            assert tops <= {"bird"}, (module, targets)
        if top == "training":
            assert "rationale" not in tops, (module, targets)


def test_rationale_top_level_stays_small() -> None:
    top = sorted(p.name for p in (REPO / "rationale").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 8, top


def test_no_module_name_means_two_things() -> None:
    """A module or subpackage name is used once in `rationale`, except a stage's command
    (`stages/x.py`, `cli/x.py`) and the command over the local models (`llm/models.py`,
    `cli/models.py`): one thing seen from two sides."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for module in _modules():
        parts = module.split(".")
        if parts[0] == "rationale" and len(parts) > 1:
            by_name[parts[-1]].add(".".join(parts[:-1]))
    allowed = ({"rationale.stages", "rationale.cli"}, {"rationale.llm", "rationale.cli"})
    clashes = {
        name: parents
        for name, parents in by_name.items()
        if len(parents) > 1 and parents not in allowed
    }
    assert clashes == {}
