"""The import graph of `model/`, read from the source with `ast` (DESIGN.md, "Import hygiene").

- No cycle between modules: data flows one way, so no module imports one that (through others)
  imports it back. Imports inside functions count: a lazy import is still an arrow.
- Nothing in `model.infer` imports `model.train`: training and inference both depend downward on
  the network (`model.nn`, where the sampler lives).
- `model.nn`, `model.train`, `model.data.store` and `model.data.crop` need only torch, numpy and h5py
  (and PyYAML, which reads the presets and the stage table) when imported, through every module they
  import at load time, so GPU nodes run the network on features made elsewhere. Chemistry and search
  libraries are imported inside the functions of CPU-side tools only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "model"
# Third-party packages a GPU node has; everything else beyond the standard library stays off its path.
GPU_NODE_PACKAGES = {"torch", "numpy", "h5py", "yaml"}
# CPU-side tools that live beside the training code but run before it, on CPU nodes; the training
# loop imports them only inside the functions that use them.
CPU_SIDE = {"model.train.clusters"}  # sequence clusters with pyhmmer, made before training


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path, at_load_only: bool) -> set[str]:
    """Every module `path` imports (`from a import b` gives `a` and, where it is a module, `a.b`);
    `at_load_only` skips imports inside function bodies, which run only when the function is called."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if at_load_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                source = ".".join([*base, child.module] if child.module else base)
                if source != "__future__":
                    found.add(source)
                    found.update(f"{source}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def graph(at_load_only: bool) -> dict[str, set[str]]:
    """Module → the modules of `model` it imports (a package's __init__ counts as the package)."""
    return {
        name: {m for m in imported_names(path, at_load_only) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_the_graph_is_read_from_the_real_imports():
    edges = graph(at_load_only=False)
    assert "model.nn.sampler" in edges["model.infer.predict"]
    assert "model.nn.network" in edges["model.infer.checkpoint"]  # a lazy import inside a function
    assert "model.nn.network" not in graph(at_load_only=True)["model.infer.checkpoint"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    assert find_cycle(graph(at_load_only=False)) is None


def test_inference_never_imports_training():
    arrows = [
        f"{a} -> {b}"
        for a, targets in graph(at_load_only=False).items()
        for b in targets
        if a.startswith("model.infer") and b.startswith("model.train")
    ]
    assert arrows == []


def test_network_training_and_store_load_with_torch_numpy_h5py_only():
    edges = graph(at_load_only=True)
    gpu_side = [
        name
        for name in MODULES
        if name.startswith(("model.nn", "model.train")) or name in ("model.data.store", "model.data.crop")
    ]
    assert "model.nn.sampler" in gpu_side and "model.train.loop" in gpu_side
    needs = {}
    for name in gpu_side:
        if name in CPU_SIDE:
            continue
        closure, todo = set(), [name]
        while todo:
            module = todo.pop()
            if module not in closure:
                closure.add(module)
                todo.extend(edges[module])
        assert not closure & CPU_SIDE, f"{name} loads a CPU-side tool: {sorted(closure & CPU_SIDE)}"
        third_party = {
            top
            for module in closure
            for imported in imported_names(MODULES[module], at_load_only=True)
            if (top := imported.partition(".")[0]) != "model" and top not in sys.stdlib_module_names
        }
        if third_party - GPU_NODE_PACKAGES:
            needs[name] = sorted(third_party - GPU_NODE_PACKAGES)
    assert needs == {}
