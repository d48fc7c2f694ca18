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
