"""The core stays Qt-free and light to import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bubble_desktop.core


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(bubble_desktop.core.__path__, "bubble_desktop.core.")]


def test_core_never_imports_qt() -> None:
    """Import every core module with PySide6 and qasync blocked."""
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'qasync', 'shiboken6'):\n"
        "            raise ImportError('core must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {_core_modules()!r}:\n"
        "    importlib.import_module(m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_import_is_light() -> None:
    """Importing the core modules pulls in no torch, transformers, qdrant or parsers."""
    heavy = [
        "torch",
        "transformers",
        "sentence_transformers",
        "qdrant_edge",
        "qdrant_client",
        "pypdf",
        "docx",
        "ddgs",
    ]
    code = (
        "import sys, importlib\n"
        f"for m in {_core_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(','.join(h for h in {heavy!r} if h in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "", f"heavy modules imported at core import time: {out}"


def test_no_import_cycles_in_the_package() -> None:
    """No two modules import each other, not even through lazy (in-function) imports: app ↔ smoke and
    loader → chatglm → loader were the last two (issue 17); both now share a module instead."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bubble_desktop"
    mods: dict[str, Path] = {}
    for p in root.rglob("*.py"):
        name = ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "") in mods:
                module = node.module or ""
                graph[m].add(module)
                graph[m].update(f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in mods)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []
