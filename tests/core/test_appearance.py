"""The start-up reader of the appearance settings agrees with the validated settings."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from bubble_desktop.core.appearance import FONT_SIZES, LANGUAGES, THEMES, Appearance, peek_appearance
from bubble_desktop.core.settings import AppearanceSettings, Settings, load_settings, save_settings


def test_defaults_and_choices_match_the_settings_model() -> None:
    d = AppearanceSettings()
    assert Appearance() == Appearance(d.language, d.theme, d.font_size)
    fields = AppearanceSettings.model_fields
    assert set(typing.get_args(fields["language"].annotation)) == set(LANGUAGES)
    assert set(typing.get_args(fields["theme"].annotation)) == set(THEMES)
    for size in (min(FONT_SIZES) - 1, min(FONT_SIZES), max(FONT_SIZES), max(FONT_SIZES) + 1):
        valid = size in FONT_SIZES
        if valid:
            assert AppearanceSettings(font_size=size).font_size == size
        else:
            with pytest.raises(ValueError):
                AppearanceSettings(font_size=size)


def test_a_saved_file_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings()
    settings.appearance = AppearanceSettings(language="zh_CN", theme="dark", font_size=14)
    save_settings(settings, path)
    loaded, _ = load_settings(path)
    a = loaded.appearance
    assert peek_appearance(path) == Appearance(a.language, a.theme, a.font_size) == ("zh_CN", "dark", 14)


@pytest.mark.parametrize(
    "content",
    [
        None,
        "",
        "{broken",
        "[1, 2]",
        json.dumps({"appearance": 3}),
        json.dumps({"appearance": {"language": "fr", "theme": "pink", "font_size": 99}}),
        json.dumps({"appearance": {"font_size": True}}),
        b"\xff\xfe\x00junk",
    ],
)
def test_anything_unreadable_gives_the_defaults(tmp_path: Path, content: str | bytes | None) -> None:
    path = tmp_path / "settings.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    assert peek_appearance(path) == Appearance()
