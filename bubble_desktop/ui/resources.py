"""Find the app's bundled files (icons, translations) from the source tree and from a PyInstaller bundle.

The files live in ``resources/`` at the repository root. In a frozen app PyInstaller unpacks data
files under ``sys._MEIPASS``; the spec copies the folder to ``resources/`` there, so both layouts
resolve the same relative path. A wheel (non-editable ``pip install``) carries them as
``bubble_desktop/_resources`` (pyproject.toml maps the folder there).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtGui import QIcon

_REPO_DIR = Path(__file__).resolve().parents[2]


def resources_dir() -> Path:
    """The folder holding ``icons/`` and ``i18n/``."""
    candidates = []
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        candidates.append(Path(meipass) / "resources")
    candidates.append(Path(__file__).resolve().parents[1] / "_resources")  # a wheel install
    candidates.append(_REPO_DIR / "resources")  # the source tree (editable install)
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def resource_path(*parts: str) -> Path:
    """Path of a bundled file, e.g. ``resource_path("icons", "bubble.svg")`` (may not exist)."""
    return resources_dir().joinpath(*parts)


def app_icon() -> QIcon:
    """The bubble icon, with the pre-rendered PNG sizes (crisp at small sizes) and the SVG."""
    icon = QIcon()
    icons = resource_path("icons")
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        png = icons / f"bubble-{size}.png"
        if png.exists():
            icon.addFile(str(png))
    svg = icons / "bubble.svg"
    if icon.isNull() and svg.exists():
        icon.addFile(str(svg))
    return icon
