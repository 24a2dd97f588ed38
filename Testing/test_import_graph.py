"""The engine's imports: no cycle among its modules, and importing the pipeline loads no deep-learning library.

The graph holds every import of a ``CMBDetectionLib`` module by another, at module level and inside functions
alike: a function-level import only postpones a cycle to the first call.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from repo_paths import REPO_ROOT

PACKAGE = "CMBDetectionLib"
HEAVY = ("tensorflow", "keras", "onnxruntime")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name of every module of the package folder ``root / package`` (a package is its ``__init__``)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` an import statement in ``module`` loads: each one named, and for a from-import
    each name that is a submodule, else the module it is taken from."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules.keys()
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):  # relative: one package up per extra dot
        base = base.rpartition(".")[0]
    source = ".".join(part for part in (base if node.level else "", node.module or "") if part)
    names = {f"{source}.{alias.name}" for alias in node.names}
    found = names & modules.keys()
    return found | ({source} & modules.keys() if len(found) < len(names) else set())


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``package`` -> the modules of ``package`` it imports anywhere in its code."""
    modules = module_names(root, package)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= _imported(node, name, is_package, modules)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph has none.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": set()})
    []
    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    ['a', 'b', 'c', 'a']
    """
    done: set[str] = set()
    for start in sorted(graph):
        path, stack = [], [(start, iter(sorted(graph[start])))]
        on_path = {start}
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(path.pop())
                done.add(node)
            elif child in on_path:
                return path[path.index(child):] + [child]
            elif child not in done and child in graph:
                stack.append((child, iter(sorted(graph[child]))))
                on_path.add(child)
                path.append(child)
    return []


def test_graph_sees_module_and_function_level_imports(tmp_path):
    package = tmp_path / "toy"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from toy.sub import b\nimport os\n")
    (package / "sub" / "b.py").write_text("def late():\n    from ..a import x\n")
    (package / "c.py").write_text("from . import a\nfrom toy.sub.b import late\n")
    graph = import_graph(tmp_path, "toy")
    assert graph["toy.a"] == {"toy.sub.b"}
    assert graph["toy.sub.b"] == {"toy.a"}
    assert graph["toy.c"] == {"toy.a", "toy.sub.b"}
    assert find_cycle(graph) in (["toy.a", "toy.sub.b", "toy.a"], ["toy.sub.b", "toy.a", "toy.sub.b"])


def test_engine_has_no_import_cycle():
    graph = import_graph(REPO_ROOT, PACKAGE)
    assert len(graph) > 40 and graph[f"{PACKAGE}.pipeline"], "the graph missed the engine's modules"
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_pipeline_import_loads_no_deep_learning_library():
    # cmb-detect imports these before it knows whether it will run at all (--help, a bad argument).
    code = (
        "import sys\n"
        f"import {PACKAGE}.pipeline, {PACKAGE}.probability.backends.choice, {PACKAGE}.cli.detect\n"
        f"print(','.join(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"importing the pipeline imported {run.stdout.strip()}"
