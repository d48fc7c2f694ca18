"""Theme: light/dark palettes, system follows the OS hint, CJK font, font size, app icon, resources."""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QPalette

from bubble_desktop.ui.resources import app_icon, resource_path
from bubble_desktop.ui.theme import ThemeManager, apply_theme, pick_ui_font_family, resolve_theme


def test_light_dark_and_font_size(qapp):
    try:
        manager = apply_theme(qapp, "dark", 13)
        assert manager.current == "dark"
        window = qapp.palette().color(QPalette.ColorRole.Window)
        assert window.lightness() < 80
        assert qapp.font().pointSize() == 13
        assert apply_theme(qapp, "light", 11) is manager  # one manager per app
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 200
        assert len(qapp.findChildren(ThemeManager)) == 1
        assert resolve_theme("system") in ("light", "dark")
        assert not qapp.windowIcon().isNull()
    finally:
        apply_theme(qapp, "light", 11)


def test_chinese_font_is_picked_when_installed(qapp):
    family = pick_ui_font_family()
    if QFontDatabase.families(QFontDatabase.WritingSystem.SimplifiedChinese):
        assert family
        apply_theme(qapp, "light", 11)
        assert family in qapp.font().families()


def test_resources_found_from_source_tree(qapp):
    for name in ("bubble.svg", "bubble.ico", "bubble-256.png"):
        assert resource_path("icons", name).is_file(), name
    assert resource_path("i18n", "bubble_zh_CN.qm").is_file()
    icon = app_icon()
    assert not icon.isNull() and 256 in [s.width() for s in icon.availableSizes()]


def test_resources_found_in_a_pyinstaller_bundle(tmp_path, monkeypatch):
    import sys

    from bubble_desktop.ui.resources import resources_dir

    (tmp_path / "resources" / "icons").mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources_dir() == tmp_path / "resources"


def test_quick_system_guess_is_corrected_by_the_os_answer(qapp):
    """At start-up "system" is judged from the platform palette (no Qt enum before the window
    shows); follow_system() then asks colorScheme() and fixes a wrong guess."""
    try:
        manager = apply_theme(qapp, "light", 11)
        truth = resolve_theme("system")
        manager._palette_dark = truth == "light"  # a palette that misleads
        assert manager.apply("system", 11, quick=True) != truth
        manager.follow_system()
        assert manager.current == truth
        expected_dark = truth == "dark"
        assert (qapp.palette().color(QPalette.ColorRole.Window).lightness() < 128) == expected_dark
        assert resolve_theme("system", system_dark=True) == "dark"
        assert resolve_theme("light", system_dark=True) == "light"
    finally:
        apply_theme(qapp, "light", 11)


def test_same_look_again_is_not_reapplied(qapp):
    """`bubble` applies the theme for the first frame and again once settings are validated: the
    second call, with the same theme and size, only checks the OS scheme (no restyle of the app)."""
    try:
        manager = apply_theme(qapp, "dark", 12)
        assert manager.applied == ("dark", 12)
        marker = QPalette(qapp.palette())
        marker.setColor(QPalette.ColorRole.ToolTipBase, "#123456")
        qapp.setPalette(marker)
        apply_theme(qapp, "dark", 12)
        assert qapp.palette().color(QPalette.ColorRole.ToolTipBase).name() == "#123456"
        apply_theme(qapp, "dark", 13)  # a change is applied
        assert qapp.palette().color(QPalette.ColorRole.ToolTipBase).name() != "#123456"
    finally:
        apply_theme(qapp, "light", 11)
