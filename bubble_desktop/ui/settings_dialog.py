"""The settings dialog, built from the settings models' metadata.

Every page lists the fields of one settings section (``core.settings.SECTIONS``) in declaration
order; each field's editor is chosen from its type, range and choices (``field_info``), so a field
added to a model shows up here without touching this file. Titles, descriptions and choice labels
are translated at display time (context "settings"; ``settings_strings.py`` lists them for lupdate).

Edits are validated live with the same pydantic models the core uses; an invalid value is shown
under its field and OK stays disabled. OK/Apply save the file and emit ``settings_changed``; the
next message uses the new values. Theme and font size apply at once, the language on next start.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import (
    DEFAULT_SYSTEM_PROMPT,
    PRESETS,
    SECTIONS,
    Settings,
    apply_preset,
    effective_system_prompt,
    field_info,
    save_settings,
)
from bubble_desktop.ui.i18n import QT_TRANSLATE_NOOP

CONTEXT = "settings"


def tr(text: str) -> str:
    """Translate a settings title/description/label (context "settings")."""
    return QCoreApplication.translate(CONTEXT, text) if text else text


# Display labels of choice values; values not listed are shown as they are.
CHOICE_LABELS: dict[str, str] = {
    "auto": QT_TRANSLATE_NOOP("settings", "Auto"),
    "cpu": QT_TRANSLATE_NOOP("settings", "CPU"),
    "cuda": QT_TRANSLATE_NOOP("settings", "NVIDIA GPU (CUDA)"),
    "mps": QT_TRANSLATE_NOOP("settings", "Apple GPU (MPS)"),
    "none": QT_TRANSLATE_NOOP("settings", "None"),
    "8bit": QT_TRANSLATE_NOOP("settings", "8-bit"),
    "4bit": QT_TRANSLATE_NOOP("settings", "4-bit"),
    "transformers": QT_TRANSLATE_NOOP(
        "settings", "On this computer (llama.cpp for .gguf, else transformers)"
    ),
    "openai": QT_TRANSLATE_NOOP("settings", "On a server of your own (OpenAI-compatible)"),
    "news": QT_TRANSLATE_NOOP("settings", "News"),
    "text": QT_TRANSLATE_NOOP("settings", "Web pages"),
    "d": QT_TRANSLATE_NOOP("settings", "Past day"),
    "w": QT_TRANSLATE_NOOP("settings", "Past week"),
    "m": QT_TRANSLATE_NOOP("settings", "Past month"),
    "y": QT_TRANSLATE_NOOP("settings", "Past year"),
    "any": QT_TRANSLATE_NOOP("settings", "Any time"),
    "on": QT_TRANSLATE_NOOP("settings", "Strict"),
    "moderate": QT_TRANSLATE_NOOP("settings", "Moderate"),
    "always": QT_TRANSLATE_NOOP("settings", "Always"),
    "never": QT_TRANSLATE_NOOP("settings", "Never"),
    "off": QT_TRANSLATE_NOOP("settings", "Off"),
    "system": QT_TRANSLATE_NOOP("settings", "System"),
    "light": QT_TRANSLATE_NOOP("settings", "Light"),
    "dark": QT_TRANSLATE_NOOP("settings", "Dark"),
    "edge": QT_TRANSLATE_NOOP("settings", "Qdrant Edge (on this computer)"),
    "qdrant": QT_TRANSLATE_NOOP("settings", "Qdrant server"),
    "milvus-lite": QT_TRANSLATE_NOOP("settings", "Milvus Lite (on this computer)"),
    "milvus": QT_TRANSLATE_NOOP("settings", "Milvus server"),
}
# Language names are always shown in their own language.
NATIVE_LABELS: dict[tuple[str, str], str] = {
    ("language", "zh_CN"): "中文（简体）",
    ("language", "en"): "English",
}
PRESET_LABELS: dict[str, str] = {
    "precise": QT_TRANSLATE_NOOP("settings", "Precise"),
    "balanced": QT_TRANSLATE_NOOP("settings", "Balanced"),
    "creative": QT_TRANSLATE_NOOP("settings", "Creative"),
}
PRESET_TIPS: dict[str, str] = {
    "precise": QT_TRANSLATE_NOOP(
        "settings", "Repeatable, focused answers: always the most likely next word."
    ),
    "balanced": QT_TRANSLATE_NOOP("settings", "A good default for conversation."),
    "creative": QT_TRANSLATE_NOOP(
        "settings", "More varied, surprising wording: for brainstorming and stories."
    ),
}
# Messages raised by the settings models' own validators.
VALIDATOR_MESSAGES = (
    QT_TRANSLATE_NOOP("settings", "chunk overlap must be smaller than chunk size"),
    QT_TRANSLATE_NOOP("settings", "a Qdrant server needs its qdrant URL"),
    QT_TRANSLATE_NOOP("settings", "a Milvus server needs its milvus URL"),
)

# Editors that differ from what the type alone suggests.
FOLDER_FIELDS = {("model", "path"), ("model", "lora_path"), ("knowledge", "embedding_model")}
SECRET_FIELDS = {
    ("model", "endpoint_api_key"),
    ("knowledge", "qdrant_api_key"),
    ("knowledge", "milvus_token"),
    ("api", "api_key"),
}
MULTILINE_FIELDS = {("sampling", "system_prompt")}
# Fields shown on the Data page instead of their own section's page.
DATA_PAGE_FIELDS = (
    ("knowledge", "vector_store"),
    ("knowledge", "qdrant_url"),
    ("knowledge", "qdrant_api_key"),
    ("knowledge", "milvus_url"),
    ("knowledge", "milvus_token"),
)
# When a field applies: (section, field) -> (the field it depends on, the values for which it applies:
# one value, a set of them, or None for "any non-empty value"). A field whose rule fails is hidden (and
# disabled), and so is every field that depends on a hidden one. A new choice that makes fields conditional
# (a knowledge store backend with server fields, say) is one more entry here.
LOCAL_ENGINE = frozenset({"transformers"})
SHOWN_WHEN: dict[tuple[str, str], tuple[tuple[str, str], Any]] = {
    ("model", "path"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "device"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "dtype"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "quantization"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "lora_path"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "threads"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "gpu_layers"): (("model", "backend"), LOCAL_ENGINE),
    ("model", "endpoint_url"): (("model", "backend"), "openai"),
    ("model", "endpoint_model"): (("model", "backend"), "openai"),
    ("model", "endpoint_api_key"): (("model", "backend"), "openai"),
    ("knowledge", "qdrant_url"): (("knowledge", "vector_store"), "qdrant"),
    ("knowledge", "qdrant_api_key"): (("knowledge", "qdrant_url"), None),
    ("knowledge", "milvus_url"): (("knowledge", "vector_store"), "milvus"),
    ("knowledge", "milvus_token"): (("knowledge", "vector_store"), "milvus"),
}
# Numbers whose lowest value means "choose for me": the spin box says "Auto" there instead of 0 / -1.
AUTO_AT_MINIMUM = {
    ("model", "context_window"),
    ("model", "threads"),
    ("model", "gpu_layers"),
    ("knowledge", "embed_threads"),
}
# Fields shown first on their page (the ones others depend on).
FIRST_FIELDS = (("model", "backend"),)
# Free-text fields edited as a list of readable choices; a value not listed is kept and shown as it is.
# Web regions are DuckDuckGo's codes (what ddgs expects).
LISTED_VALUES: dict[tuple[str, str], dict[str, Any]] = {
    ("web", "region"): {
        "wt-wt": QT_TRANSLATE_NOOP("settings", "Any region"),
        "cn-zh": QT_TRANSLATE_NOOP("settings", "China"),
        "hk-tzh": QT_TRANSLATE_NOOP("settings", "Hong Kong"),
        "tw-tzh": QT_TRANSLATE_NOOP("settings", "Taiwan"),
        "sg-en": QT_TRANSLATE_NOOP("settings", "Singapore"),
        "jp-jp": QT_TRANSLATE_NOOP("settings", "Japan"),
        "kr-kr": QT_TRANSLATE_NOOP("settings", "Korea"),
        "in-en": QT_TRANSLATE_NOOP("settings", "India"),
        "us-en": QT_TRANSLATE_NOOP("settings", "United States"),
        "ca-en": QT_TRANSLATE_NOOP("settings", "Canada"),
        "uk-en": QT_TRANSLATE_NOOP("settings", "United Kingdom"),
        "de-de": QT_TRANSLATE_NOOP("settings", "Germany"),
        "fr-fr": QT_TRANSLATE_NOOP("settings", "France"),
        "es-es": QT_TRANSLATE_NOOP("settings", "Spain"),
        "it-it": QT_TRANSLATE_NOOP("settings", "Italy"),
        "ru-ru": QT_TRANSLATE_NOOP("settings", "Russia"),
        "br-pt": QT_TRANSLATE_NOOP("settings", "Brazil"),
        "au-en": QT_TRANSLATE_NOOP("settings", "Australia"),
    }
}


def _applies(rule_value: Any, current: Any) -> bool:
    if rule_value is None:
        return bool(current)
    if isinstance(rule_value, (set, frozenset, tuple, list)):
        return current in rule_value
    return bool(current == rule_value)


def _choice_available(section: str, name: str, value: str) -> bool:
    """Choices this install cannot run are not offered (Milvus without its optional packages)."""
    if (section, name) == ("knowledge", "vector_store") and value in ("milvus-lite", "milvus"):
        from bubble_desktop.core.kb.milvus_store import lite_available, server_available

        return lite_available() if value == "milvus-lite" else server_available()
    return True


# Sliders only where the range is small enough to be dragged meaningfully.
MAX_SLIDER_STEPS = 40_000


@dataclass(frozen=True)
class PageSpec:
    key: str
    title: str
    fields: tuple[tuple[str, str], ...]  # (section, field name)


def _page_specs() -> list[PageSpec]:
    """Pages in display order; each section's fields go to its page, new sections get a page of their own."""
    titles = {
        "model": QT_TRANSLATE_NOOP("settings", "Model"),
        "sampling": QT_TRANSLATE_NOOP("settings", "Sampling"),
        "knowledge": QT_TRANSLATE_NOOP("settings", "Knowledge"),
        "web": QT_TRANSLATE_NOOP("settings", "Web search"),
        "api": QT_TRANSLATE_NOOP("settings", "API server"),
        "appearance": QT_TRANSLATE_NOOP("settings", "Appearance"),
    }
    pages = []
    for section, model in SECTIONS.items():
        names = tuple(
            (section, name) for name in model.model_fields if (section, name) not in DATA_PAGE_FIELDS
        )
        names = tuple(k for k in FIRST_FIELDS if k in names) + tuple(
            k for k in names if k not in FIRST_FIELDS
        )
        pages.append(PageSpec(section, titles.get(section, section.replace("_", " ").title()), names))
    pages.append(PageSpec("data", QT_TRANSLATE_NOOP("settings", "Data"), DATA_PAGE_FIELDS))
    return pages


def _decimals(step: float | None) -> int:
    if not step or step >= 1:
        return 1 if step else 2
    return max(0, min(6, math.ceil(-math.log10(step) - 1e-9)))


class FieldEditor(QWidget):
    """One field's editor: ``value()``, ``set_value()`` and ``value_changed``, whatever the widget."""

    value_changed = Signal()
    described = Signal(str, str)  # title, description: the pointer or focus reached this field

    def __init__(self, section: str, info: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section = section
        self.name: str = info["name"]
        self.info = info
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._kind = self._build(layout, info)
        tip = tr(info["description"])
        for w in (self, *self.findChildren(QWidget)):
            if tip:
                w.setToolTip(tip)
                w.setWhatsThis(tip)
            w.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in (QEvent.Type.Enter, QEvent.Type.FocusIn):
            self.described.emit(tr(self.info["title"]), tr(self.info["description"]))
        return False

    # -- construction --------------------------------------------------------------------------
    def _build(self, layout: QHBoxLayout, info: dict[str, Any]) -> str:
        key = (self.section, self.name)
        if not info.get("type"):  # e.g. an Optional field (anyOf in the schema): go by the default
            default = info.get("default")
            guessed = {bool: "boolean", int: "integer", float: "number"}.get(type(default), "string")
            info = {**info, "type": guessed}
            self.info = info
        if info["choices"] or key in LISTED_VALUES:
            self.combo = QComboBox()
            listed = LISTED_VALUES.get(key, {})
            for value in info["choices"] or listed:
                if not _choice_available(self.section, self.name, value):
                    continue
                label = NATIVE_LABELS.get((self.name, value)) or tr(
                    listed.get(value) or CHOICE_LABELS.get(value, value)
                )
                self.combo.addItem(label, value)
            self.combo.currentIndexChanged.connect(self._on_any_changed)
            layout.addWidget(self.combo, 1)
            return "choice"
        if info["type"] == "boolean":
            self.check = QCheckBox()
            self.check.toggled.connect(self._on_any_changed)
            layout.addWidget(self.check, 1)
            return "bool"
        if info["type"] in ("integer", "number"):
            return self._build_number(layout, info)
        if key in MULTILINE_FIELDS:
            self.plain = QPlainTextEdit()
            self.plain.setTabChangesFocus(True)
            self.plain.setMinimumHeight(90)
            self.plain.textChanged.connect(self._on_any_changed)
            layout.addWidget(self.plain, 1)
            return "multiline"
        self.line = QLineEdit()
        self.line.textChanged.connect(self._on_any_changed)
        layout.addWidget(self.line, 1)
        if key in SECRET_FIELDS:
            self.line.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        if key in FOLDER_FIELDS:
            placeholder = (
                QCoreApplication.translate("SettingsDialog", "Built-in all-MiniLM-L6-v2")
                if key == ("knowledge", "embedding_model")
                else QCoreApplication.translate("SettingsDialog", "Choose a folder…")
            )
            self.line.setPlaceholderText(placeholder)
            browse = QPushButton(QCoreApplication.translate("SettingsDialog", "Browse…"))
            browse.clicked.connect(self._on_browse_clicked)
            layout.addWidget(browse)
            if key == ("model", "path"):
                self.line.setPlaceholderText(
                    QCoreApplication.translate("SettingsDialog", "Choose a folder or a .gguf file…")
                )
                browse.setText(QCoreApplication.translate("SettingsDialog", "Folder…"))
                gguf = QPushButton(QCoreApplication.translate("SettingsDialog", "GGUF file…"))
                gguf.setObjectName("chooseGgufButton")
                gguf.clicked.connect(self._on_gguf_clicked)
                layout.addWidget(gguf)
        return "text"

    def _build_number(self, layout: QHBoxLayout, info: dict[str, Any]) -> str:
        is_int = info["type"] == "integer"
        lo = info["minimum"] if info["minimum"] is not None else (-(2**31) if is_int else -1e9)
        hi = info["maximum"] if info["maximum"] is not None else (2**31 - 1 if is_int else 1e9)
        step = info["step"] or (1 if is_int else 0.1)
        if is_int:
            spin: QSpinBox | QDoubleSpinBox = QSpinBox()
            spin.setRange(int(lo), int(hi))
            spin.setSingleStep(int(step))
        else:
            spin = QDoubleSpinBox()
            spin.setDecimals(_decimals(step))
            spin.setRange(float(lo), float(hi))
            spin.setSingleStep(float(step))
        spin.setMinimumWidth(110)
        spin.setAccelerated(True)
        if (self.section, self.name) in AUTO_AT_MINIMUM:
            spin.setSpecialValueText(QCoreApplication.translate("SettingsDialog", "Auto"))
        self.spin = spin
        self._lo, self._step = lo, step
        steps = round((hi - lo) / step)
        self.slider: QSlider | None = None
        if 0 < steps <= MAX_SLIDER_STEPS:
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setRange(0, steps)
            self.slider.setPageStep(max(1, steps // 20))
            self.slider.valueChanged.connect(self._on_slider_value_changed)
            layout.addWidget(self.slider, 1)
            layout.addWidget(spin)
        else:
            layout.addWidget(spin)
            layout.addStretch(1)
        spin.valueChanged.connect(self._on_spin_value_changed)
        return "number"

    # -- value access --------------------------------------------------------------------------
    def value(self) -> Any:
        if self._kind == "choice":
            return self.combo.currentData()
        if self._kind == "bool":
            return self.check.isChecked()
        if self._kind == "number":
            v = self.spin.value()
            return int(v) if self.info["type"] == "integer" else round(float(v), 6)
        if self._kind == "multiline":  # the system prompt: its default is shown in the UI's language
            text = self.plain.toPlainText()
            return DEFAULT_SYSTEM_PROMPT if text == effective_system_prompt(DEFAULT_SYSTEM_PROMPT) else text
        return self.line.text()

    def set_value(self, value: Any) -> None:
        if self._kind == "choice":
            index = self.combo.findData(value)
            if index < 0 and (self.section, self.name) in LISTED_VALUES and value:
                self.combo.addItem(str(value), value)  # a code set by hand: kept, shown as it is
                index = self.combo.count() - 1
            self.combo.setCurrentIndex(max(0, index))
        elif self._kind == "bool":
            self.check.setChecked(bool(value))
        elif self._kind == "number":
            self.spin.setValue(value)
        elif self._kind == "multiline":
            if self.plain.toPlainText() != effective_system_prompt(str(value)):
                self.plain.setPlainText(effective_system_prompt(str(value)))
        elif self.line.text() != value:
            self.line.setText(str(value))

    def focus_widget(self) -> QWidget:
        kind = self._kind
        if kind == "choice":
            return self.combo
        if kind == "bool":
            return self.check
        if kind == "number":
            return self.spin
        if kind == "multiline":
            return self.plain
        return self.line

    # -- slots ---------------------------------------------------------------------------------
    @Slot()
    def _on_any_changed(self) -> None:
        self.value_changed.emit()

    @Slot(int)
    def _on_slider_value_changed(self, position: int) -> None:
        value = self._lo + position * self._step
        if abs(self.spin.value() - value) >= self._step / 2:
            if isinstance(self.spin, QSpinBox):
                self.spin.setValue(round(value))
            else:
                self.spin.setValue(float(value))

    @Slot()
    def _on_spin_value_changed(self) -> None:
        if self.slider is not None:
            position = round((self.spin.value() - self._lo) / self._step)
            if self.slider.value() != position:
                self.slider.blockSignals(True)
                self.slider.setValue(position)
                self.slider.blockSignals(False)
        self.value_changed.emit()

    @Slot()
    def _on_gguf_clicked(self) -> None:
        start = self.line.text() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self,
            tr(self.info["title"]),
            start,
            QCoreApplication.translate("SettingsDialog", "GGUF models (*.gguf);;All files (*)"),
        )
        if path:
            self.line.setText(path)

    @Slot()
    def _on_browse_clicked(self) -> None:
        start = self.line.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, tr(self.info["title"]), start)
        if folder:
            self.line.setText(folder)


class SettingsDialog(QDialog):
    """Edit a copy of the settings; OK/Apply validate, save to ``paths.settings_file`` and emit the result."""

    settings_changed = Signal(object)  # Settings

    def __init__(self, settings: Settings, paths: Paths, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SettingsDialog")
        self.setWindowTitle(self.tr("Settings"))
        self.resize(860, 620)
        self._settings = settings.model_copy(deep=True)
        self._paths = paths
        self._initial_language = settings.appearance.language
        self._editors: dict[tuple[str, str], FieldEditor] = {}
        self._errors: dict[tuple[str, str], QLabel] = {}
        self._forms: dict[tuple[str, str], QFormLayout] = {}
        self._holders: dict[tuple[str, str], QWidget] = {}

        self.pages = QListWidget()
        self.pages.setObjectName("settingsPages")
        self.pages.setFixedWidth(170)
        self.stack = QStackedWidget()
        for spec in _page_specs():
            self._add_page(spec)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.restore_button = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        self.restore_button.setToolTip(self.tr("Put every value on this page back to its default."))
        self.buttons.accepted.connect(self._on_buttons_accepted)
        self.buttons.rejected.connect(self.reject)
        self.buttons.clicked.connect(self._on_buttons_clicked)
        self.status = QLabel()
        self.status.setProperty("role", "error")
        self.status.setWordWrap(True)

        self.help = QLabel()
        self.help.setObjectName("settingsHelp")
        self.help.setProperty("role", "hint")
        self.help.setWordWrap(True)
        self.help.setTextFormat(Qt.TextFormat.RichText)
        self.help.setMinimumHeight(self.help.fontMetrics().lineSpacing() * 3)
        self.help.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.pages.currentRowChanged.connect(self._on_pages_current_row_changed)
        self.pages.setCurrentRow(0)
        right = QVBoxLayout()
        right.addWidget(self.stack, 1)
        right.addSpacing(4)
        right.addWidget(self.help)
        right.addSpacing(4)
        body = QHBoxLayout()
        body.addWidget(self.pages)
        body.addLayout(right, 1)
        outer = QVBoxLayout(self)
        outer.addLayout(body, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.buttons)
        outer.addLayout(bottom)

        self._load(self._settings)
        self._validate()

    # -- page construction ---------------------------------------------------------------------
    def _add_page(self, spec: PageSpec) -> None:
        page = QWidget()
        page.setObjectName(f"page_{spec.key}")
        column = QVBoxLayout(page)
        heading = QLabel(tr(spec.title))
        heading.setProperty("role", "heading")
        column.addWidget(heading)
        if spec.key == "sampling":
            column.addLayout(self._preset_row())
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        infos = {s: {i["name"]: i for i in field_info(SECTIONS[s])} for s in {s for s, _ in spec.fields}}
        for section, name in spec.fields:
            self._add_field(form, section, infos[section][name])
        if spec.key == "data":
            self._add_folder_rows(form)
        column.addLayout(form)
        if spec.key == "appearance":
            self.language_note = QLabel(self.tr("The new language is used after you restart O.Bubble."))
            self.language_note.setProperty("role", "hint")
            self.language_note.setVisible(False)
            column.addWidget(self.language_note)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(page)
        self.stack.addWidget(scroll)
        item = QListWidgetItem(tr(spec.title))
        item.setData(Qt.ItemDataRole.UserRole, spec.key)
        self.pages.addItem(item)

    def _add_field(self, form: QFormLayout, section: str, info: dict[str, Any]) -> None:
        editor = FieldEditor(section, info)
        editor.setObjectName(f"field_{section}_{info['name']}")
        editor.value_changed.connect(self._on_editor_value_changed)
        editor.described.connect(self._on_editor_described)
        label = QLabel(tr(info["title"]))
        label.setToolTip(tr(info["description"]))
        label.setBuddy(editor.focus_widget())
        error = QLabel()
        error.setProperty("role", "error")
        error.setWordWrap(True)
        error.setVisible(False)
        holder = QWidget()
        box = QVBoxLayout(holder)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        box.addWidget(editor)
        box.addWidget(error)
        form.addRow(label, holder)
        self._forms[(section, info["name"])] = form
        self._holders[(section, info["name"])] = holder
        self._editors[(section, info["name"])] = editor
        self._errors[(section, info["name"])] = error

    def _preset_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel(self.tr("Presets:")))
        self.preset_buttons: dict[str, QPushButton] = {}
        for name in PRESETS:
            button = QPushButton(tr(PRESET_LABELS.get(name, name.title())))
            button.setObjectName(f"preset_{name}")
            button.setToolTip(tr(PRESET_TIPS.get(name, "")))
            button.setProperty("preset", name)
            button.clicked.connect(self._on_preset_clicked)
            row.addWidget(button)
            self.preset_buttons[name] = button
        row.addStretch(1)
        return row

    def _add_folder_rows(self, form: QFormLayout) -> None:
        """Where Bubble keeps its files (read-only), and a button to open the data folder."""
        rows = (
            (self.tr("Settings file"), self._paths.settings_file),
            (self.tr("Data folder"), self._paths.data_dir),
            (self.tr("Knowledge bases"), self._paths.knowledge_dir),
            (self.tr("Models"), self._paths.models_dir),
            (self.tr("Cache"), self._paths.cache_dir),
            (self.tr("Logs"), self._paths.log_dir),
        )
        spacer = QWidget()
        spacer.setFixedHeight(8)
        form.addRow(spacer)
        for title, path in rows:
            shown = QLineEdit(str(path))
            shown.setReadOnly(True)
            shown.setCursorPosition(0)
            form.addRow(title, shown)
        self.open_data_button = QPushButton(self.tr("Open data folder"))
        self.open_data_button.clicked.connect(self._on_open_data_clicked)
        row = QHBoxLayout()
        row.addWidget(self.open_data_button)
        row.addStretch(1)
        form.addRow("", row)
        hint = QLabel(self.tr("Set BUBBLE_HOME to keep everything in one folder (a portable install)."))
        hint.setProperty("role", "hint")
        hint.setWordWrap(True)
        form.addRow("", hint)

    # -- values --------------------------------------------------------------------------------
    def editor(self, section: str, name: str) -> FieldEditor:
        return self._editors[(section, name)]

    def error_label(self, section: str, name: str) -> QLabel:
        return self._errors[(section, name)]

    def _load(self, settings: Settings, sections: Iterable[str] | None = None) -> None:
        wanted = set(sections) if sections is not None else set(SECTIONS)
        for (section, name), editor in self._editors.items():
            if section in wanted:
                editor.blockSignals(True)
                editor.set_value(getattr(getattr(settings, section), name))
                editor.blockSignals(False)
        self._validate()

    def _raw(self, section: str) -> dict[str, Any]:
        return {name: e.value() for (s, name), e in self._editors.items() if s == section}

    def _validate(self) -> Settings | None:
        """Validate every section; show errors inline; the Settings when all is valid, else None."""
        for label in self._errors.values():
            label.setVisible(False)
        update: dict[str, Any] = {}
        bad = 0
        for section, model in SECTIONS.items():
            base = getattr(self._settings, section).model_dump()
            try:
                update[section] = model.model_validate({**base, **self._raw(section)})
            except ValidationError as exc:
                for err in exc.errors():
                    bad += 1
                    self._show_error(section, err)
        hidden_errors = self._update_applicable_fields()
        ok = bad == 0
        self.ok_button.setEnabled(ok)
        self.apply_button.setEnabled(ok)
        status = "" if ok else self.tr("Fix the values marked in red first.")
        if hidden_errors:  # an error on a field that is not shown must still be readable
            status = "\n".join([status, *hidden_errors])
        self.status.setText(status)
        language = self._editors.get(("appearance", "language"))
        if language is not None and hasattr(self, "language_note"):
            self.language_note.setVisible(language.value() != self._initial_language)
        return self._settings.model_copy(update=update) if ok else None

    def applies(self, section: str, name: str) -> bool:
        """Whether a field matters for the values chosen now (SHOWN_WHEN, followed through)."""
        key = (section, name)
        seen: set[tuple[str, str]] = set()
        while key in SHOWN_WHEN and key not in seen:
            seen.add(key)
            other, value = SHOWN_WHEN[key]
            if other not in self._editors or not _applies(value, self._editors[other].value()):
                return False
            key = other
        return True

    def _update_applicable_fields(self) -> list[str]:
        """Show only the fields that apply; returns the error texts of the hidden ones."""
        hidden_errors = []
        for key, editor in self._editors.items():
            if key not in SHOWN_WHEN:
                continue
            shown = self.applies(*key)
            editor.setEnabled(shown)
            self._forms[key].setRowVisible(self._holders[key], shown)
            error = self._errors[key]
            if not shown and not error.isHidden():
                hidden_errors.append(f"{tr(editor.info['title'])}: {error.text()}")
        return hidden_errors

    def _show_error(self, section: str, err: Any) -> None:
        message = str(err.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            if message.startswith(prefix):
                message = message[len(prefix) :]
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else self._field_named_in(section, message)
        text = tr(message)
        text = text[:1].upper() + text[1:]
        label = self._errors.get((section, name)) if name else None
        if label is None:  # no field to attach it to: show it on the first field of the section
            label = next(v for (s, _), v in self._errors.items() if s == section)
        label.setText(text)
        label.setVisible(True)

    def _field_named_in(self, section: str, message: str) -> str | None:
        """For model-level errors: the field whose name appears first in the message."""
        lowered = message.lower()
        hits = []
        for s, name in self._editors:
            if s == section:
                pos = lowered.find(name.replace("_", " "))
                if pos >= 0:
                    hits.append((pos, name))
        return min(hits)[1] if hits else None

    def current_settings(self) -> Settings | None:
        """The edited settings if they are all valid, else None."""
        return self._validate()

    def apply_preset(self, name: str) -> None:
        current = self._validate()
        sampling = current.sampling if current is not None else self._settings.sampling
        preset = apply_preset(sampling, name)
        for field in PRESETS[name]:
            self._editors[("sampling", field)].set_value(getattr(preset, field))
        self._validate()

    def restore_defaults(self, page_key: str | None = None) -> None:
        """Defaults for every field on one page (the current one when None)."""
        if page_key is None:
            page_key = self.pages.currentItem().data(Qt.ItemDataRole.UserRole)
        spec = next(p for p in _page_specs() if p.key == page_key)
        defaults = Settings()
        for section, name in spec.fields:
            self._editors[(section, name)].set_value(getattr(getattr(defaults, section), name))
        self._validate()

    def apply(self) -> bool:
        """Validate, save and announce; False (and nothing saved) when something is invalid."""
        settings = self._validate()
        if settings is None:
            return False
        save_settings(settings, self._paths.settings_file)
        self._settings = settings
        self.settings_changed.emit(settings.model_copy(deep=True))
        return True

    # -- slots ---------------------------------------------------------------------------------
    @Slot()
    def _on_editor_value_changed(self) -> None:
        self._validate()

    @Slot(int)
    def _on_pages_current_row_changed(self, row: int) -> None:
        self.stack.setCurrentIndex(row)
        self.help.setText(self.tr("Point at a setting to see what it does."))

    @Slot(str, str)
    def _on_editor_described(self, title: str, description: str) -> None:

        self.help.setText(f"<b>{html.escape(title)}</b><br>{html.escape(description)}")

    @Slot()
    def _on_preset_clicked(self) -> None:
        button = self.sender()
        if isinstance(button, QPushButton):
            self.apply_preset(str(button.property("preset")))

    @Slot()
    def _on_buttons_accepted(self) -> None:
        if self.apply():
            self.accept()

    @Slot(QAbstractButton)
    def _on_buttons_clicked(self, button: QAbstractButton) -> None:
        if button is self.apply_button:
            self.apply()
        elif button is self.restore_button:
            self.restore_defaults()

    @Slot()
    def _on_open_data_clicked(self) -> None:
        self._paths.data_dir.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._paths.data_dir)))
