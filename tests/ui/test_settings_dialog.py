"""Settings dialog: built from the models' metadata, validates inline, presets, round-trips to disk."""

from __future__ import annotations

import pytest

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import PRESETS, SECTIONS, Settings, load_settings
from bubble_desktop.ui.settings_dialog import SettingsDialog


@pytest.fixture
def paths(bubble_home) -> Paths:
    return Paths.under(bubble_home).ensure()


@pytest.fixture
def dialog(qtbot, paths) -> SettingsDialog:
    d = SettingsDialog(Settings(), paths)
    qtbot.addWidget(d)
    return d


def test_every_field_of_every_section_has_an_editor_with_a_tooltip(dialog):
    for section, model in SECTIONS.items():
        for name in model.model_fields:
            editor = dialog.editor(section, name)
            assert editor.value() == getattr(getattr(Settings(), section), name)
            assert editor.toolTip(), f"{section}.{name} has no tooltip"
    pages = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    assert pages == ["Model", "Sampling", "Knowledge", "Web search", "API server", "Appearance", "Data"]


def test_sampling_numbers_have_slider_and_spin_box_in_sync(dialog):
    temperature = dialog.editor("sampling", "temperature")
    assert temperature.slider is not None
    temperature.slider.setValue(temperature.slider.maximum())
    assert temperature.value() == pytest.approx(2.0)
    temperature.spin.setValue(0.35)
    assert temperature.slider.value() == round(0.35 / 0.05)


def test_round_trip_persists_and_emits(qtbot, dialog, paths):
    dialog.editor("sampling", "temperature").set_value(0.25)
    dialog.editor("sampling", "max_new_tokens").set_value(1024)
    dialog.editor("sampling", "system_prompt").set_value("Answer in one line.")
    dialog.editor("web", "mode").set_value("text")
    dialog.editor("appearance", "theme").set_value("dark")
    dialog.editor("knowledge", "hybrid").set_value(False)
    dialog.editor("knowledge", "qdrant_url").set_value("http://localhost:6333")
    with qtbot.waitSignal(dialog.settings_changed, timeout=2000) as blocker:
        dialog.ok_button.click()
    emitted: Settings = blocker.args[0]
    assert emitted.sampling.temperature == pytest.approx(0.25)
    loaded, notices = load_settings(paths.settings_file)
    assert notices == []
    assert loaded == emitted
    assert loaded.sampling.max_new_tokens == 1024
    assert loaded.sampling.system_prompt == "Answer in one line."
    assert loaded.web.mode == "text" and loaded.appearance.theme == "dark"
    assert loaded.knowledge.hybrid is False and loaded.knowledge.qdrant_url == "http://localhost:6333"
    # Reopened from the saved file, the dialog shows the saved values.
    again = SettingsDialog(loaded, paths)
    qtbot.addWidget(again)
    assert again.editor("sampling", "temperature").value() == pytest.approx(0.25)
    assert again.editor("web", "mode").value() == "text"


def test_invalid_overlap_is_shown_inline_and_blocks_ok(qtbot, dialog, paths):
    dialog.show()
    dialog.editor("knowledge", "chunk_overlap").set_value(600)  # chunk size is 500
    error = dialog.error_label("knowledge", "chunk_overlap")
    assert not error.isHidden() and "overlap" in error.text().lower()
    assert not dialog.ok_button.isEnabled()
    assert dialog.apply() is False
    assert not paths.settings_file.exists()
    dialog.editor("knowledge", "chunk_size").set_value(1000)
    assert error.isHidden()
    assert dialog.ok_button.isEnabled()


def test_presets_and_restore_defaults(dialog):
    dialog.apply_preset("precise")
    for name, value in PRESETS["precise"].items():
        assert dialog.editor("sampling", name).value() == pytest.approx(value)
    dialog.preset_buttons["creative"].click()
    assert dialog.editor("sampling", "temperature").value() == pytest.approx(
        PRESETS["creative"]["temperature"]
    )
    dialog.editor("sampling", "seed").set_value(42)
    dialog.restore_defaults("sampling")
    defaults = Settings().sampling
    assert dialog.editor("sampling", "temperature").value() == pytest.approx(defaults.temperature)
    assert dialog.editor("sampling", "seed").value() == -1


def test_language_change_says_restart(qtbot, dialog):
    dialog.show()
    assert dialog.language_note.isHidden()
    dialog.editor("appearance", "language").set_value("zh_CN")
    assert not dialog.language_note.isHidden()
    combo = dialog.editor("appearance", "language").combo
    assert combo.currentText() == "中文（简体）"


def test_pointing_at_a_field_explains_it(qtbot, dialog):
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    temperature = dialog.editor("sampling", "temperature")
    QApplication.sendEvent(temperature.spin, QEvent(QEvent.Type.Enter))
    assert "Temperature" in dialog.help.text() and "adventurous" in dialog.help.text()


def test_server_fields_only_enabled_for_the_server_backend(dialog):
    url = dialog.editor("model", "endpoint_url")
    assert not url.isEnabled()
    dialog.editor("model", "backend").set_value("openai")
    assert url.isEnabled()


def test_a_new_field_appears_without_touching_the_dialog(qtbot, paths, monkeypatch):
    from pydantic import Field

    from bubble_desktop.core.settings import SamplingSettings
    from bubble_desktop.ui import settings_dialog

    class WithMinP(SamplingSettings):
        min_p: float = Field(
            0.05,
            ge=0.0,
            le=1.0,
            title="Min-p",
            description="Drop unlikely words.",
            json_schema_extra={"step": 0.01},
        )

    monkeypatch.setitem(settings_dialog.SECTIONS, "sampling", WithMinP)
    dialog = SettingsDialog(Settings(sampling=WithMinP()), paths)
    qtbot.addWidget(dialog)
    editor = dialog.editor("sampling", "min_p")
    assert editor.slider is not None and editor.toolTip() == "Drop unlikely words."
    editor.set_value(0.2)
    with qtbot.waitSignal(dialog.settings_changed, timeout=2000) as blocker:
        assert dialog.apply()
    assert blocker.args[0].sampling.min_p == pytest.approx(0.2)


def _row_shown(dialog, section, name):
    """Whether the field's row (label and editor) is shown on its page."""
    holder = dialog.editor(section, name).parentWidget()
    return dialog._forms[(section, name)].isRowVisible(holder)


def test_server_fields_are_hidden_while_the_model_runs_here(qtbot, dialog):
    """Issue 16.13: URL, model name and key only for a server engine; the model file only for a local one."""
    dialog.show()
    server = [("model", "endpoint_url"), ("model", "endpoint_model"), ("model", "endpoint_api_key")]
    assert dialog.editor("model", "backend").value() == "transformers"
    assert not any(_row_shown(dialog, *key) for key in server)
    assert _row_shown(dialog, "model", "path")
    dialog.editor("model", "backend").set_value("openai")
    assert all(_row_shown(dialog, *key) for key in server)
    assert not _row_shown(dialog, "model", "path") and not _row_shown(dialog, "model", "quantization")
    assert not _row_shown(dialog, "model", "gpu_layers") and not _row_shown(dialog, "model", "threads")
    # the choice the others depend on comes first on its page
    form = dialog._forms[("model", "backend")]
    first = form.itemAt(0, form.ItemRole.FieldRole).widget()
    assert first is dialog.editor("model", "backend").parentWidget()


def test_knowledge_server_key_only_with_a_server_and_no_jargon(qtbot, dialog):
    dialog.show()
    assert not _row_shown(dialog, "knowledge", "qdrant_api_key")
    assert not _row_shown(dialog, "knowledge", "qdrant_url")  # Qdrant Edge, on this computer
    dialog.editor("knowledge", "vector_store").set_value("qdrant")
    assert _row_shown(dialog, "knowledge", "qdrant_url") and not _row_shown(
        dialog, "knowledge", "qdrant_api_key"
    )
    dialog.editor("knowledge", "qdrant_url").set_value("http://localhost:6333")
    assert _row_shown(dialog, "knowledge", "qdrant_api_key")
    from bubble_desktop.core.settings import SECTIONS, field_info

    titles = [i["title"] for s in SECTIONS.values() for i in field_info(s)]
    assert "Qdrant server URL" not in titles and "Backend" not in titles


def test_region_is_a_readable_list_of_ddgs_codes(qtbot, paths):
    settings = Settings()
    region = SettingsDialog(settings, paths)
    qtbot.addWidget(region)
    combo = region.editor("web", "region").combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert combo.currentText() == "Any region" and region.editor("web", "region").value() == "wt-wt"
    assert {"China", "United States"} <= set(labels) and "wt-wt" not in labels
    combo.setCurrentIndex(labels.index("China"))
    assert region.current_settings().web.region == "cn-zh"
    settings.web.region = "xa-ar"  # a code set by hand is kept
    other = SettingsDialog(settings, paths)
    qtbot.addWidget(other)
    assert other.editor("web", "region").value() == "xa-ar"


def test_an_error_on_a_hidden_field_is_still_shown(qtbot, paths, monkeypatch):
    """A rule may hide a field with an invalid value: its message goes to the status line."""
    from bubble_desktop.ui import settings_dialog

    rule = (("knowledge", "hybrid"), True)
    monkeypatch.setitem(settings_dialog.SHOWN_WHEN, ("knowledge", "chunk_overlap"), rule)
    d = SettingsDialog(Settings(), paths)
    qtbot.addWidget(d)
    d.show()
    d.editor("knowledge", "chunk_overlap").set_value(d.editor("knowledge", "chunk_size").value() + 1)
    assert not d.ok_button.isEnabled() and "smaller than chunk size" not in d.status.text()
    d.editor("knowledge", "hybrid").set_value(False)
    assert not _row_shown(d, "knowledge", "chunk_overlap")
    assert "smaller than chunk size" in d.status.text()


def test_vector_database_choice_on_the_data_page(qtbot, dialog, paths, monkeypatch):
    store = dialog.editor("knowledge", "vector_store")
    values = [store.combo.itemData(i) for i in range(store.combo.count())]
    assert values == ["edge", "qdrant", "milvus-lite", "milvus"]
    assert store.combo.itemText(2) == "Milvus Lite (on this computer)"
    milvus_url = dialog.editor("knowledge", "milvus_url")
    assert not milvus_url.isEnabled()
    store.set_value("milvus")
    assert milvus_url.isEnabled() and dialog.editor("knowledge", "milvus_token").isEnabled()
    assert not dialog.ok_button.isEnabled()  # a Milvus server needs its URL
    assert dialog.error_label("knowledge", "milvus_url").isVisible() or not dialog.isVisible()
    milvus_url.set_value("http://localhost:19530")
    assert dialog.ok_button.isEnabled()
    assert dialog.apply()
    loaded, _ = load_settings(paths.settings_file)
    assert (loaded.knowledge.vector_store, loaded.knowledge.milvus_url) == (
        "milvus",
        "http://localhost:19530",
    )

    # where the Milvus packages are not installed, their choices are not offered
    from bubble_desktop.core.kb import milvus_store

    monkeypatch.setattr(milvus_store, "lite_available", lambda: False)
    monkeypatch.setattr(milvus_store, "server_available", lambda: False)
    bare = SettingsDialog(Settings(), paths)
    qtbot.addWidget(bare)
    combo = bare.editor("knowledge", "vector_store").combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["edge", "qdrant"]
