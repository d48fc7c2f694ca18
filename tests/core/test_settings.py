from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import (
    PRESETS,
    SCHEMA_VERSION,
    SECTIONS,
    KnowledgeSettings,
    SamplingSettings,
    Settings,
    apply_preset,
    field_info,
    load_settings,
    save_settings,
)


def test_defaults_round_trip(tmp_path: Path) -> None:
    s = Settings()
    s.sampling.temperature = 0.3
    s.web.enabled = True
    f = tmp_path / "settings.json"
    save_settings(s, f)
    loaded, notices = load_settings(f)
    assert notices == []
    assert loaded == s
    assert json.loads(f.read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"sampling": {"temperature": 9}}', "\x00\x01"])
def test_corrupt_file_is_moved_aside(tmp_path: Path, content: str) -> None:
    f = tmp_path / "settings.json"
    f.write_text(content)
    loaded, notices = load_settings(f)
    assert loaded == Settings()
    assert len(notices) == 1 and "Defaults are used" in notices[0]
    assert not f.exists()
    assert len(list(tmp_path.glob("settings.json.corrupt-*"))) == 1


def test_old_schema_is_migrated(tmp_path: Path) -> None:
    f = tmp_path / "settings.json"
    f.write_text(json.dumps({"sampling": {"top_k": 7}}))
    loaded, notices = load_settings(f)
    assert notices == [] and loaded.sampling.top_k == 7 and loaded.schema_version == SCHEMA_VERSION


def test_ranges_are_enforced() -> None:
    with pytest.raises(ValidationError):
        SamplingSettings(temperature=-1)
    with pytest.raises(ValidationError):
        SamplingSettings(top_p=1.5)
    with pytest.raises(ValidationError):
        KnowledgeSettings(chunk_size=200, chunk_overlap=300)
    s = SamplingSettings()
    with pytest.raises(ValidationError):
        s.max_new_tokens = 0


def test_every_field_has_title_and_description() -> None:
    for section in SECTIONS.values():
        for info in field_info(section):
            assert info["title"] and info["description"], info["name"]
    temp = next(i for i in field_info(SamplingSettings) if i["name"] == "temperature")
    assert (temp["minimum"], temp["maximum"], temp["step"]) == (0.0, 2.0, 0.05)


def test_presets() -> None:
    for name in PRESETS:
        apply_preset(SamplingSettings(), name)
    assert apply_preset(SamplingSettings(), "precise").greedy


def test_bubble_home_puts_everything_under_one_folder(bubble_home: Path) -> None:
    p = Paths.default().ensure()
    for d in (p.config_dir, p.data_dir, p.models_dir, p.cache_dir, p.log_dir):
        assert d.is_dir() and bubble_home.resolve() in d.parents
