"""Qt-free core: everything the app does, importable and testable headless.

Nothing under ``bubble_desktop.core`` may import PySide6 or qasync (tests/core/test_boundaries.py
enforces it), and heavy engines (torch, transformers, qdrant, parsers) are imported lazily inside
the functions that need them so that ``import bubble_desktop.core`` stays fast.
"""
