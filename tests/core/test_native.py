"""core/native.heavy_imports: GC paused during imports, frozen only after new imports."""

from __future__ import annotations

from typing import Any


def test_heavy_imports_freezes_only_when_it_imported_something() -> None:
    """A second model load must not freeze the garbage of the first (core/native.py)."""
    import gc
    import sys

    from bubble_desktop.core.native import heavy_imports

    gc.unfreeze()
    with heavy_imports():
        pass  # nothing new imported
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    sys.modules.pop("colorsys", None)
    with heavy_imports():
        import colorsys  # noqa: F401
    assert gc.get_freeze_count() > 0 and gc.isenabled()
    gc.unfreeze()


def _child_peak(q: Any) -> None:
    from bubble_desktop.core.native import peak_rss_bytes

    q.put(peak_rss_bytes())


def test_peak_rss_of_a_spawned_child_is_its_own() -> None:
    """getrusage's ru_maxrss survives execve on Linux: a spawned child (llama.cpp's, a training job)
    would report the parent's size as its own peak. peak_rss_bytes does not."""
    import multiprocessing

    from bubble_desktop.core.native import peak_rss_bytes

    ballast = bytearray(300 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # resident
    assert peak_rss_bytes() > 300 << 20
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_peak, args=(q,))
    p.start()
    child_peak = q.get(timeout=60)
    p.join(30)
    del ballast
    assert 0 < child_peak < 150 << 20, child_peak / 2**20
