"""Imports among vaekit's modules run one way: no module imports one that (indirectly) imports it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC, package: str = "vaekit") -> dict[str, set[str]]:
    """Module -> the vaekit modules it imports anywhere in its body (function-level imports too).

    ``from vaekit import x`` counts as importing the submodule ``vaekit.x`` when there is one,
    else the package ``vaekit`` itself (its ``__init__``).
    """
    files = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import: resolve against this module's package
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_vaekit_modules_import_each_other_one_way():
    graph = import_graph()
    assert {"vaekit", "vaekit.io", "vaekit.models.vae", "vaekit.cli"} <= set(graph)
    assert "vaekit.io" in graph["vaekit.checkpoint"]  # the walk sees module-level imports
    assert "vaekit.report" in graph["vaekit.cli"]  # ... and function-level ones
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles_and_resolves_from_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n__version__ = '1'\n")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from pkg.sub import thing\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import __version__\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub"}, "pkg.sub": {"pkg"}}
    assert find_cycle(graph) == ["pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg"]
    (pkg / "sub" / "__init__.py").write_text("VERSION = '1'\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
