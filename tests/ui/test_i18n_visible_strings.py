"""In the Chinese UI no visible text is left in English: every label, button, tooltip, placeholder,
menu action, tab, list item, combo item and table header of the main window (with its first-run
panel and status bar), the knowledge tab, the settings dialog and the models dialog is walked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QAction, QTextDocumentFragment
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QTabWidget,
    QTextEdit,
    QWidget,
)

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings, Settings
from bubble_desktop.ui.i18n import install_translator

# Words that stay as they are in Chinese text: names of products, formats, units and a few
# technical tokens a Chinese user sees in English in every app (all matched case-sensitively).
WHITELIST = {
    # product, model and library names
    "O.Bubble",
    "Bubble",
    "GGUF",
    "LoRA",
    "PEFT",
    "ChatGLM",
    "SmolLM2",
    "MiniLM",
    "Qwen",
    "Llama",
    "Mistral",
    "Gemma",
    "Phi",
    "Qdrant",
    "Milvus",
    "Zilliz",
    "Edge",
    "OpenAI",
    "llama.cpp",
    "transformers",
    "Hugging",
    "Face",
    "ModelScope",
    "hf-mirror",
    "DuckDuckGo",
    "ddgs",
    "vLLM",
    "TGI",
    "CUDA",
    "MPS",
    "Apple",
    "NVIDIA",
    "OCR",
    "BM25",
    "RRF",
    "all-MiniLM-L6-v2",
    "bge-small-zh",
    "PDFium",
    "Word",
    "WPS",
    # formats, units, protocols
    "API",
    "URL",
    "HTTP",
    "http",
    "https",
    "JSON",
    "JSONL",
    "CSV",
    "PDF",
    "HTML",
    "Markdown",
    "MB",
    "GB",
    "KB",
    "tok",
    "s",
    "ms",
    "CPU",
    "GPU",
    "RAM",
    "ID",
    "SOCKS",
    "SQLite",
    "zip",
    "px",
    "pt",
    "Q4_K_M",
    "Q8_0",
    "fp16",
    "int4",
    "int8",
    "bfloat16",
    "float16",
    "float32",
    "Top-p",
    "Top-k",
    "Min-p",
    # a language is named in its own language in the language choice
    "English",
    # Qt's own (style names, keys)
    "Ctrl",
    "Shift",
    "Enter",
    "Esc",
    "Tab",
    "Fusion",
}
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.+\-]*[A-Za-z0-9]|[A-Za-z]")
PATH_OR_GLOB = re.compile(r"\S*[/\\*]\S*")
FILE_LIKE = re.compile(r"^[\w.\-]+\.(gguf|json|txt|md|pdf|py|safetensors|bin|db)$|^[/~]|^https?://|^\d")


def english_words(text: str) -> list[str]:
    """The English words in a text with no Chinese at all (mixed text counts as translated)."""
    text = text.replace("&", "").strip()
    if not text or CJK.search(text):
        return []
    text = PATH_OR_GLOB.sub(" ", text)  # /home/me/models, *.gguf, C:\\models
    words = [w.strip(".-+") for w in WORD.findall(text)]
    return [
        w for w in words if len(w) >= 2 and w not in WHITELIST and not FILE_LIKE.match(w) and not w.isupper()
    ]


def visible_texts(root: QWidget) -> Iterator[tuple[str, str]]:
    """(where, text) for every text a user can see in ``root`` and its children (hidden ones too)."""
    widgets = [root, *root.findChildren(QWidget)]
    for w in widgets:
        name = f"{type(w).__name__}#{w.objectName()}"
        if w.isWindow():
            yield name + ".windowTitle", w.windowTitle()
        yield name + ".toolTip", w.toolTip()
        if isinstance(w, QLabel):
            text = w.text()
            if re.search(r"<[a-zA-Z/][^>]*>", text):
                text = QTextDocumentFragment.fromHtml(text).toPlainText()
            yield name + ".text", text
        elif isinstance(w, QAbstractButton):
            yield name + ".text", w.text()
        elif isinstance(w, QProgressBar):
            yield name + ".text", w.text()
        elif isinstance(w, QGroupBox):
            yield name + ".title", w.title()
        if isinstance(w, (QLineEdit, QTextEdit, QPlainTextEdit)):
            yield name + ".placeholder", w.placeholderText()
        if isinstance(w, QComboBox):
            for i in range(w.count()):
                yield f"{name}.item{i}", w.itemText(i)
        if isinstance(w, QTabWidget):
            for i in range(w.count()):
                yield f"{name}.tab{i}", w.tabText(i)
                yield f"{name}.tabToolTip{i}", w.tabToolTip(i)
        if isinstance(w, QListWidget):
            for i in range(w.count()):
                yield f"{name}.item{i}", w.item(i).text()
        if isinstance(w, QHeaderView) and w.model() is not None:
            for section in range(w.count()):
                yield f"{name}.header{section}", str(w.model().headerData(section, w.orientation()) or "")
        for action in w.actions():
            if isinstance(action, QAction) and not action.isSeparator():
                yield f"{name}.action", action.text()
                yield f"{name}.actionToolTip", action.toolTip()
                if action.menu() is not None:
                    yield f"{name}.menu", action.menu().title()


def untranslated(root: QWidget) -> list[str]:
    found = []
    for where, text in visible_texts(root):
        words = english_words(text)
        if words:
            found.append(f"{where}: {text!r} ({', '.join(words)})")
    return sorted(set(found))


@pytest.fixture
def chinese(qapp: Any) -> Iterator[Any]:
    assert install_translator(qapp, "zh_CN") == "zh_CN"
    yield qapp
    install_translator(qapp, "en")


def test_the_detector_finds_english() -> None:
    assert english_words("Loading the libraries") == ["Loading", "the", "libraries"]
    assert english_words("正在加载 GGUF 文件") == []
    assert english_words("GGUF · CPU · 4.2 GB") == []
    assert english_words("smollm2-135m.gguf") == []
    assert english_words("GGUF (*.gguf)") == english_words("/home/me/models") == []
    assert english_words("Files of &type:") == ["Files", "of", "type"]


def test_main_window_in_chinese_has_no_english(qtbot: Any, chinese: Any) -> None:
    from tests.ui.test_main_window import close_window, make_window

    window = make_window(qtbot, model_path="")  # no model: the first-run panel is shown
    try:
        window.status.show_loading("SmolLM2-135M-Instruct")
        window.status.show_progress(0.02, "Loading the libraries")
        bad = untranslated(window)
        for menu in window.menuBar().findChildren(QWidget):
            bad += untranslated(menu)
        assert not bad, "\n".join(bad)
    finally:
        close_window(window)


def test_knowledge_tab_in_chinese_has_no_english(
    qtbot: Any, chinese: Any, bubble_home: Path, minilm_dir: Path
) -> None:
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.ui.knowledge_tab import KnowledgeTab

    service = KnowledgeService(
        Paths.under(bubble_home).ensure(), KnowledgeSettings(embedding_model=str(minilm_dir))
    )
    tab = KnowledgeTab(service)
    qtbot.addWidget(tab)
    try:
        tab._set_failures(
            [("/data/a.bin", "binary file or unknown text encoding"), ("/data/b.pdf", "the PDF has no pages")]
        )
        bad = untranslated(tab)
        assert not bad, "\n".join(bad)
    finally:
        assert tab.shutdown()
        service.close()


def test_failed_document_tooltip_in_chinese(chinese: Any) -> None:
    """A failure reason stored in the catalog in English is shown in the UI's language."""
    from PySide6.QtCore import Qt

    from bubble_desktop.core.kb.types import DocumentInfo
    from bubble_desktop.ui.knowledge_model import DocumentTableModel

    model = DocumentTableModel()
    model.set_documents(
        [DocumentInfo("d1", "/data/x.pdf", "pdf", 0, 10, 0.0, "failed", "the PDF has no pages")]
    )
    assert model.data(model.index(0, 5), Qt.ItemDataRole.ToolTipRole) == "这个 PDF 没有页面"


def test_answer_notices_in_chinese(qtbot: Any, chinese: Any) -> None:
    """Notices are kept in English with the message and shown in the UI's language."""
    from bubble_desktop.core.errors import WebSearchError
    from bubble_desktop.ui.chat_view import MessageWidget

    answer = MessageWidget("assistant")
    qtbot.addWidget(answer)
    warning = WebSearchError("Web search timed out; answered without the web.").english_message
    answer.set_notices(("Web search found nothing for this question.", warning))
    assert answer.notice_label.text() == (
        "联网搜索没有找到与这个问题相关的结果。\n联网搜索超时；本次回答没有用到网络结果。"
    )


def test_settings_dialog_in_chinese_has_no_english(qtbot: Any, chinese: Any, bubble_home: Path) -> None:
    from bubble_desktop.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings(), Paths.under(bubble_home))
    qtbot.addWidget(dialog)
    prompt = dialog.editor("sampling", "system_prompt")
    assert prompt.plain.toPlainText().startswith("你是 O.Bubble")  # the default, in the UI's language
    assert prompt.value() == Settings().sampling.system_prompt  # saved as the English default
    bad = untranslated(dialog)
    assert not bad, "\n".join(bad)


def test_models_dialog_in_chinese_has_no_english(qtbot: Any, chinese: Any) -> None:
    from tests.ui.test_main_window import close_window, make_window

    window = make_window(qtbot, model_path="")
    try:
        window.open_models()
        bad = untranslated(window.models_dialog)
        assert not bad, "\n".join(bad)
    finally:
        window.models_dialog.close()
        close_window(window)


def test_qt_file_dialog_in_chinese(qtbot: Any, chinese: Any) -> None:
    """Qt's own widget-based file dialog ("Look in", "Files of type") comes from qtbase_zh_CN.qm."""
    from PySide6.QtWidgets import QFileDialog

    dialog = QFileDialog(None, "x", "", "GGUF (*.gguf)")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
    qtbot.addWidget(dialog)
    labels = {w.objectName(): w.text() for w in dialog.findChildren(QLabel)}
    # Qt 6 asks for "&Look in:" / "Files of &type:", which qtbase_zh_CN.qm lacks: ours has them
    assert labels["lookInLabel"] == "查找范围(&L)：" and labels["fileTypeLabel"] == "文件类型(&T)："
    dialog.setViewMode(QFileDialog.ViewMode.Detail)
    # the Type column of a folder (Qt 6 asks QAbstractFileIconProvider with a disambiguation)
    assert QApplication.translate("QAbstractFileIconProvider", "Folder", "All other platforms") == "文件夹"
    bad = untranslated(dialog)
    assert not bad, "\n".join(bad)
