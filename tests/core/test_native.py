"""core/native.heavy_imports: GC paused during imports, frozen only after new imports."""

from __future__ import annotations


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
