"""The Chinese UI: complete .ts, a loadable .qm, Chinese in real widgets, Qt's own dialogs too."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtCore import QLocale
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from bubble_desktop.ui.i18n import install_translator, resolve_language
from bubble_desktop.ui.resources import resource_path

TS = resource_path("i18n", "bubble_zh_CN.ts")
PLACEHOLDER = re.compile(r"%(?:\d|n|v|m)")
NOT_ACCELERATORS = {"Q&A"}  # shown as text in a table, not a menu mnemonic


def _tool():
    spec = importlib.util.spec_from_file_location(
        "update_translations", resource_path("i18n", "update_translations.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chinese(qapp):
    assert install_translator(qapp, "zh_CN") == "zh_CN"
    yield qapp
    install_translator(qapp, "en")


def test_every_ts_entry_is_translated_with_its_placeholders():
    root = ET.parse(TS).getroot()
    messages = 0
    for context in root.iter("context"):
        name = context.findtext("name")
        assert name, "a message without context is never found at run time"
        for message in context.iter("message"):
            messages += 1
            source = message.findtext("source") or ""
            translation = message.find("translation")
            assert translation is not None and translation.get("type") is None, (name, source)
            text = (translation.text or "").strip() or "".join(f.text or "" for f in translation)
            assert text.strip(), (name, source)
            assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(source)), (name, source)
            if source not in NOT_ACCELERATORS:
                assert source.count("&") == text.count("&"), (name, source)
    assert messages > 100
    assert resource_path("i18n", "bubble_zh_CN.qm").stat().st_mtime >= TS.stat().st_mtime - 5


def test_settings_strings_are_up_to_date():
    """A new settings field must reach the .ts: run resources/i18n/update_translations.py."""
    generated = Path(__file__).resolve().parents[2] / "bubble_desktop" / "ui" / "settings_strings.py"
    assert generated.read_text(encoding="utf-8") == _tool().settings_strings_source()


def test_settings_dialog_in_chinese(qtbot, chinese, bubble_home):
    from bubble_desktop.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings(), Paths.under(bubble_home))
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "设置"
    assert dialog.pages.item(1).text() == "采样"
    temperature = dialog.editor("sampling", "temperature")
    assert "0 表示" in temperature.toolTip()
    # Qt's own buttons come from qtbase_zh_CN.qm
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).text().startswith("取消")
    assert QLocale().language() == QLocale.Language.Chinese


def test_knowledge_tab_headers_in_chinese(chinese):
    from bubble_desktop.ui.knowledge_model import DocumentTableModel

    model = DocumentTableModel()
    from PySide6.QtCore import Qt

    assert model.headerData(0, Qt.Orientation.Horizontal) == "名称"


def test_english_again_after_switching_back(qtbot, qapp, bubble_home):
    from bubble_desktop.ui.settings_dialog import SettingsDialog

    install_translator(qapp, "zh_CN")
    install_translator(qapp, "en")
    dialog = SettingsDialog(Settings(), Paths.under(bubble_home))
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Settings"
    assert QApplication.translate("settings", "Temperature") == "Temperature"


def test_system_language_follows_the_locale():
    assert resolve_language("system", QLocale(QLocale.Language.Chinese, QLocale.Country.China)) == "zh_CN"
    assert resolve_language("system", QLocale(QLocale.Language.Chinese, QLocale.Country.Taiwan)) == "zh_CN"
    assert resolve_language("system", QLocale(QLocale.Language.German, QLocale.Country.Germany)) == "en"
    assert resolve_language("en", QLocale(QLocale.Language.Chinese, QLocale.Country.China)) == "en"
    assert resolve_language("zh_CN") == "zh_CN"
