"""PySide6's per-import check reads the file's bytes instead of inspect.getsource: the same answers."""

from __future__ import annotations

import sys
from typing import Any

import PySide6.QtWidgets  # noqa: F401 - the check exists once PySide6 is imported

from bubble_desktop.bootstrap import quicken_pyside_import_check


def test_the_quick_check_answers_as_pyside_s_own(monkeypatch: Any) -> None:
    feature = sys.modules["shibokensupport.feature"]
    original = feature._mod_uses_pyside
    if getattr(original, "quickened", False):  # installed by an earlier test's app start
        original = original.__defaults__[0]
    monkeypatch.setattr(feature, "_mod_uses_pyside", original)
    quicken_pyside_import_check()
    quick = feature._mod_uses_pyside
    assert quick is not original and quick.quickened
    quicken_pyside_import_check()  # twice is once
    assert feature._mod_uses_pyside is quick
    import bubble_desktop.core.i18n as does_not
    import bubble_desktop.ui.status_bar as uses

    modules = [uses, does_not, sys, PySide6.QtWidgets, *list(sys.modules.values())[:400]]
    assert [quick(m) for m in modules] == [original(m) for m in modules]
    assert quick(uses) and not quick(does_not)
