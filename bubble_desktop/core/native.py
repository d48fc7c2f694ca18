"""Import torch and its friends without stalling the app's other threads (the GUI's above all).

Two things hold the GIL for long stretches while ``import torch`` / transformers /
sentence-transformers run on a worker thread: the dynamic loader running libtorch's static
initialisers inside the import (0.2-0.4 s), and full cyclic-GC passes over the ~1M objects the
imports create (0.1-0.5 s each, longer as the heap grows). ``heavy_imports()`` loads libtorch
first through a ctypes ``dlopen`` (ctypes releases the GIL), pauses the GC during the imports and
then freezes what they made, so later collections never walk it again. Only imports belong in the
block: objects frozen there are never collected by the cyclic GC (modules live for good anyway;
a model built in the block and later dropped could be kept in memory if it held a cycle).
Measured in tests/bench/gui_responsiveness.py (index_stall) and the issue #5 note.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Preload libtorch with the GIL released, pause the cyclic GC, freeze what was imported."""
    preload_torch_library()
    if not gc.isenabled():
        yield
        return
    known = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        # Freeze only when the block imported something: a later call (the next model load) would
        # otherwise freeze whatever garbage exists then, e.g. the cycles of a model just unloaded.
        if len(sys.modules) > known:
            gc.freeze()  # before enable: the next allocation would otherwise collect the whole backlog
        gc.enable()


def preload_torch_library() -> None:
    """Load libtorch_cpu with the GIL released, before ``import torch`` loads it with the GIL held.
    Best effort (Linux/macOS CPU builds): any failure changes nothing, the import loads it."""
    if "torch" in sys.modules or os.name != "posix":
        return
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return
        lib = Path(spec.origin).parent / "lib"
        path = next((p for p in (lib / "libtorch_cpu.so", lib / "libtorch_cpu.dylib") if p.is_file()), None)
        if path is None:
            return
        dlopen = ctypes.CDLL(None).dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        # The handle is never closed: torch keeps the library for the life of the process anyway.
        if not dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL):
            log.debug("preloading %s failed; import torch will load it", path)
    except Exception:  # noqa: BLE001 - an optimisation only
        log.debug("preloading libtorch failed", exc_info=True)


def release_freed_memory(collect: bool = True) -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise; ``collect`` runs a full GC
    first, which holds the GIL: leave it off on paths the GUI may be waiting behind)."""
    if collect:
        gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (0 where it cannot be read). On Linux it is
    /proc/self/status' VmHWM: getrusage's ru_maxrss survives execve, so in a spawned child (the
    llama.cpp model, a training job) it starts at the parent's size at the fork, the app's few
    hundred MB, whatever the child itself uses."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if sys.platform == "darwin" else 1024)
    except ImportError:  # Windows
        pass
    try:
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    except Exception:  # noqa: BLE001 - informational only
        return 0
