"""Light and dark looks, a font that renders Chinese, and the font size setting.

``apply_theme(app, "system" | "light" | "dark", font_size)``: Fusion style with our own palette and
a small stylesheet, so the app looks the same on every platform. "system" follows the OS colour
scheme (``QStyleHints.colorScheme()``) and keeps following it while the app runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore  # QtCore.Qt on use: its first touch costs ~20 ms (ui/theme.py)
from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

# First one present wins. Windows, macOS, Linux (fonts-noto-cjk), then other common CJK families.
CJK_FONT_FAMILIES = (
    "Microsoft YaHei UI",
    "Microsoft YaHei",
    "PingFang SC",
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "Hiragino Sans GB",
    "SimHei",
)


@dataclass(frozen=True)
class Colors:
    """The few colours the palette and stylesheet are built from."""

    window: str
    base: str
    alternate: str
    text: str
    muted: str
    button: str
    border: str
    accent: str
    accent_text: str
    link: str


LIGHT = Colors(
    window="#f5f6f8",
    base="#ffffff",
    alternate="#f0f2f5",
    text="#1d2330",
    muted="#6b7385",
    button="#ffffff",
    border="#d5d9e0",
    accent="#2f6fe4",
    accent_text="#ffffff",
    link="#2459c4",
)
DARK = Colors(
    window="#1e2128",
    base="#262a32",
    alternate="#2c313a",
    text="#e6e9ef",
    muted="#9aa2b1",
    button="#2f343d",
    border="#3d434e",
    accent="#4f8dff",
    accent_text="#ffffff",
    link="#79a8ff",
)


def resolve_theme(theme: str, system_dark: bool | None = None) -> str:
    """``light`` or ``dark``: "system" asks the OS (Qt 6.5+ colorScheme; light when unknown), or
    takes ``system_dark`` when given (see ``ThemeManager.apply(quick=True)``)."""
    if theme in ("light", "dark"):
        return theme
    if system_dark is not None:
        return "dark" if system_dark else "light"
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else QtCore.Qt.ColorScheme.Unknown
    return "dark" if scheme == QtCore.Qt.ColorScheme.Dark else "light"


def palette_for(colors: Colors) -> QPalette:
    p = QPalette()
    c = QColor
    role = QPalette.ColorRole
    for r, value in (
        (role.Window, colors.window),
        (role.WindowText, colors.text),
        (role.Base, colors.base),
        (role.AlternateBase, colors.alternate),
        (role.Text, colors.text),
        (role.Button, colors.button),
        (role.ButtonText, colors.text),
        (role.ToolTipBase, colors.base),
        (role.ToolTipText, colors.text),
        (role.PlaceholderText, colors.muted),
        (role.Highlight, colors.accent),
        (role.HighlightedText, colors.accent_text),
        (role.Link, colors.link),
        (role.LinkVisited, colors.link),
        (role.BrightText, "#ff5c5c"),
        (role.Light, colors.base),
        (role.Midlight, colors.alternate),
        (role.Mid, colors.border),
        (role.Dark, colors.border),
        (role.Shadow, "#000000"),
    ):
        p.setColor(r, c(value))
    disabled = QPalette.ColorGroup.Disabled
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(disabled, r, c(colors.muted))
    return p


def stylesheet_for(colors: Colors) -> str:
    """Small touches Fusion lacks: rounded inputs, an accent primary button, quiet borders."""
    return f"""
QToolTip {{ color: {colors.text}; background: {colors.base}; border: 1px solid {colors.border};
           padding: 4px; }}
QLineEdit, QPlainTextEdit {{
    border: 1px solid {colors.border}; border-radius: 5px; padding: 3px 6px; background: {colors.base}; }}
QLineEdit:focus, QPlainTextEdit:focus {{ border: 1px solid {colors.accent}; }}
QPushButton {{ border: 1px solid {colors.border}; border-radius: 5px; padding: 4px 12px;
               background: {colors.button}; }}
QPushButton:hover {{ border-color: {colors.accent}; }}
QPushButton:default, QPushButton[primary="true"] {{ background: {colors.accent}; color: {colors.accent_text};
               border-color: {colors.accent}; }}
QPushButton:disabled, QPushButton:default:disabled {{ color: {colors.muted}; background: {colors.alternate};
               border-color: {colors.border}; }}
QToolButton#kbButton, QToolButton#webButton {{ border: 1px solid {colors.border}; border-radius: 5px;
               padding: 4px 10px; background: {colors.button}; }}
QToolButton#kbButton:hover, QToolButton#webButton:hover {{ border-color: {colors.accent}; }}
QToolButton#kbButton {{ padding-right: 22px; }}
QToolButton#kbButton::menu-indicator {{ subcontrol-origin: padding; subcontrol-position: center right;
               right: 7px; }}
QToolButton#webButton:checked {{ background: {colors.accent}; color: {colors.accent_text};
               border-color: {colors.accent}; }}
QListWidget#settingsPages {{ border: none; background: transparent; font-weight: 600; }}
QListWidget#settingsPages::item {{ padding: 7px 10px; border-radius: 5px; }}
QListWidget#settingsPages::item:selected {{ background: {colors.accent}; color: {colors.accent_text}; }}
QLabel[role="error"] {{ color: #d93a3a; }}
QLabel[role="hint"] {{ color: {colors.muted}; }}
QLabel[role="heading"] {{ font-size: 15pt; font-weight: 600; }}
QLabel[role="subheading"] {{ font-weight: 600; }}
QLabel[role="empty"] {{ color: {colors.muted}; font-size: 16pt; }}
QTabBar::tab {{ padding: 6px 18px; border: none; border-bottom: 2px solid transparent;
                background: transparent; color: {colors.muted}; }}
QTabBar::tab:selected {{ color: {colors.text}; border-bottom: 2px solid {colors.accent}; font-weight: 600; }}
QTabBar::tab:hover {{ color: {colors.text}; }}
QTextBrowser#knowledgeHits {{
    border: 1px solid {colors.border}; border-radius: 5px; background: {colors.base};
}}
QFrame[role="dropzone"] {{ border: 2px dashed {colors.border}; border-radius: 8px; }}
QFrame[role="dropzone"][active="true"] {{ border: 3px solid {colors.accent}; }}
QLabel[role="hint"][active="true"] {{ color: {colors.accent}; font-weight: 600; }}
QHeaderView::section {{ background: {colors.alternate}; border: none;
                        border-bottom: 1px solid {colors.border}; padding: 4px 6px; }}
QTableView {{ gridline-color: {colors.border}; border: 1px solid {colors.border}; border-radius: 5px; }}
QProgressBar {{ border: 1px solid {colors.border}; border-radius: 5px; text-align: center;
                background: {colors.base}; }}
QProgressBar::chunk {{ background: {colors.accent}; border-radius: 4px; }}
"""


def pick_ui_font_family() -> str | None:
    """The first installed font family that has Chinese glyphs, or None to keep Qt's default."""
    installed = set(QFontDatabase.families())
    for family in CJK_FONT_FAMILIES:
        if family in installed:
            return family
    for family in QFontDatabase.families(QFontDatabase.WritingSystem.SimplifiedChinese):
        return family
    return None


def ui_font(font_size: int) -> QFont:
    """Application font: the platform default, falling back to a CJK family for Chinese text."""
    font = QFont(QGuiApplication.font())
    family = pick_ui_font_family()
    if family:
        # Keep the platform's Latin font first, then the CJK family for glyphs it lacks.
        families = [f for f in font.families() if f != family] + [family]
        font.setFamilies(families)
    font.setPointSize(int(font_size))
    return font


class ThemeManager(QObject):
    """Applies a theme and, for "system", re-applies it when the OS switches between light and dark.

    Start-up detail: the first touch of any ``Qt.`` namespace enum (``colorScheme()`` returns one)
    makes PySide6 build all of them, ~25 ms before the window can show. So ``apply(quick=True)``
    judges "system" from the platform's own palette (dark window colour = dark scheme) and
    ``follow_system()``, called once the window is up, asks ``colorScheme()``, corrects the look if
    the palette misled, and follows later changes.
    """

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self._app = app
        self._theme: str | None = None  # none applied yet
        self._font_size = 11
        self._following = False
        self.current = "light"
        # the platform's palette, before ours replaces it
        self._palette_dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def apply(self, theme: str, font_size: int, quick: bool = False) -> str:
        """Apply ``theme`` and ``font_size``; returns the look actually used (light/dark)."""
        self._theme, self._font_size = theme, font_size
        self.current = resolve_theme(theme, self._palette_dark if quick else None)
        colors = DARK if self.current == "dark" else LIGHT
        self._app.setStyle("Fusion")
        self._app.setPalette(palette_for(colors))
        self._app.setFont(ui_font(font_size))
        self._app.setStyleSheet(stylesheet_for(colors))
        return self.current

    @property
    def applied(self) -> tuple[str | None, int]:
        """The theme and font size last applied."""
        return self._theme, self._font_size

    def follow_system(self) -> None:
        """Ask the OS for its colour scheme now (fixing a quick guess) and on every change."""
        if not self._following:
            self._following = True
            hints = QGuiApplication.styleHints()
            if hints is not None:
                hints.colorSchemeChanged.connect(self._on_hints_color_scheme_changed)
        if self._theme == "system" and resolve_theme("system") != self.current:
            self.apply(self._theme, self._font_size)

    @Slot()
    def _on_hints_color_scheme_changed(self) -> None:
        if self._theme == "system":
            self.apply(self._theme, self._font_size)


def apply_theme(
    app: QApplication, theme: str = "system", font_size: int = 11, quick: bool = False
) -> ThemeManager:
    """Apply the look (and the app icon) once and keep following the OS for "system"; returns the
    manager. ``quick``: for the first frame at start-up; call ``follow_system()`` right after."""
    manager = getattr(app, "_bubble_theme_manager", None)  # findChild costs ~6 ms at start-up
    if not isinstance(manager, ThemeManager):
        manager = ThemeManager(app)
        app._bubble_theme_manager = manager  # type: ignore[attr-defined]
        if app.windowIcon().isNull():
            from bubble_desktop.ui.resources import app_icon

            app.setWindowIcon(app_icon())
    if quick or (theme, font_size) != manager.applied:
        manager.apply(theme, font_size, quick=quick)
    if not quick:
        manager.follow_system()  # re-applies only if the OS disagrees with the look shown
    return manager
