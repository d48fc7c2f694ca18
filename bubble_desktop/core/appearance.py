"""The appearance settings (language, theme, font size) read straight from the JSON file.

The window shows before the full settings are validated (pydantic costs ~100 ms of start-up), but
its colours, font and language must be right from the first paint. This reader is lenient: any
missing or invalid value is the default that ``core.settings.AppearanceSettings`` would use
(tests/core/test_appearance.py keeps the two in step); the full validation follows right after.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

LANGUAGES = ("system", "zh_CN", "en")
THEMES = ("system", "light", "dark")
FONT_SIZES = range(8, 25)


class Appearance(NamedTuple):
    language: str = "system"
    theme: str = "system"
    font_size: int = 11


def peek_appearance(path: Path) -> Appearance:
    """The appearance part of the settings file at ``path``; defaults for anything unreadable."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        section = raw.get("appearance") if isinstance(raw, dict) else None
    except (OSError, ValueError):
        section = None
    if not isinstance(section, dict):
        return Appearance()
    default = Appearance()
    language = section.get("language")
    theme = section.get("theme")
    size = section.get("font_size")
    return Appearance(
        language=language if language in LANGUAGES else default.language,
        theme=theme if theme in THEMES else default.theme,
        font_size=size if type(size) is int and size in FONT_SIZES else default.font_size,
    )
