"""Imports inside ``hashpivot.kernels``: no circles (module-level or inside functions), no
optimizer, and every module importable first in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
PACKAGE = "hashpivot.kernels"
MODULES = sorted(p.stem for p in KERNELS.glob("*.py") if p.stem != "__init__")


def imported_modules(path: Path) -> set[str]:
    """Dotted names of everything ``path`` imports, anywhere in the file; relative imports
    resolved against :data:`PACKAGE`."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE if node.level == 1 else (node.module or "")
            if node.level == 1 and node.module:
                base = f"{PACKAGE}.{node.module}"
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from . import philox`
    return out


def kernel_import_graph() -> dict[str, set[str]]:
    """Edges module → kernels modules it imports."""
    return {
        m: {
            name.rsplit(".", 1)[1]
            for name in imported_modules(KERNELS / f"{m}.py")
            if name.startswith(PACKAGE + ".") and name.rsplit(".", 1)[1] in MODULES
        }
        - {m}
        for m in MODULES
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first = last), or None if it is acyclic."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_on_known_graphs() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_lazy_imports() -> None:
    g = kernel_import_graph()
    # simulate and evaluate dispatch to the CUDA backend inside functions
    assert "cuda" in g["simulate"] and "cuda" in g["evaluate"]
    assert "philox" in g["market"]  # `from . import philox`


def test_no_import_circles_in_kernels() -> None:
    cycle = find_cycle(kernel_import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_kernels_do_not_import_optimizer() -> None:
    for m in MODULES:
        bad = {n for n in imported_modules(KERNELS / f"{m}.py") if "optimizer" in n}
        assert not bad, f"kernels/{m}.py imports {sorted(bad)}"


@pytest.mark.parametrize("module", ["cuda", "nvrtc", "simulate", "evaluate"])
def test_module_imports_first_in_fresh_interpreter(module: str) -> None:
    res = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.{module}"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
