"""The ``gguf`` package's constants (tensor type sizes, architecture names) without numpy.

``import gguf.constants`` runs the package's ``__init__`` first, which imports numpy and gguf's
reader and writer: ~130 ms, much of it numpy's C initialisation holding the GIL. Opening a GGUF does
that on the model worker thread, and the GUI thread's heartbeat stalled 21–36 ms at every load
(``tests/bench/gui_responsiveness.py``); with gguf already imported, 3–15 ms. ``constants.py`` itself
imports only ``enum`` and ``typing``, so it is loaded here on its own, from the installed package
(the frozen app ships it as a file for this). Where it cannot be found as a file, the normal import.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "bubble_desktop._gguf_constants"


@functools.cache
def gguf_constants() -> ModuleType:
    """``gguf.constants``, or the same file loaded apart from its package (no numpy)."""
    if "gguf.constants" in sys.modules:  # the package is imported already (e.g. a GGUF import)
        return sys.modules["gguf.constants"]
    path = constants_file()
    if path is not None:
        spec = importlib.util.spec_from_file_location(_NAME, path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[_NAME] = module
            try:
                spec.loader.exec_module(module)
            except Exception:  # noqa: BLE001 - a gguf release that needs its package: import it whole
                del sys.modules[_NAME]
            else:
                return module
    import gguf.constants

    return gguf.constants


def constants_file() -> Path | None:
    """gguf's ``constants.py`` as a file, or None (the frozen app must ship it: its smoke test checks)."""
    try:
        spec = importlib.util.find_spec("gguf")  # finds the package without running its __init__
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "constants.py"
        if path.is_file():
            return path
    return None
