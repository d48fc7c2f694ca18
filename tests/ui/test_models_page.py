"""The Models page and the first-run panel download a catalog model from a hub of our own on
127.0.0.1 (tests/fixtures/fake_hub.py), end to end with the real downloader, and load it: a tiny
GGUF then answers through llama.cpp. Nothing is fetched before the click."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from tests.fixtures.fake_hub import FakeHub

ENTRY: dict[str, Any] = {
    "id": "tiny-llama-gguf",
    "name": "Tiny Llama",
    "family": "tiny",
    "kind": "chat",
    "format": "gguf",
    "params_b": 0.001,
    "quant": "F32",
    "context": 2048,
    "ram_gb": 0.1,
    "vram_gb": 0.0,
    "languages": ["en", "zh"],
    "licence": "MIT",
    "files": [{"path": "tiny-llama.gguf"}],
    "sources": {"hf": {"repo": "tiny-org/Tiny-GGUF"}},
    "source_note": "the tests' own tiny GGUF on their own hub",
}
TOO_BIG = {
    **copy.deepcopy(ENTRY),
    "id": "huge-gguf",
    "name": "Huge",
    "ram_gb": 10_000.0,
    "files": [{"path": "huge.gguf", "size": 10**12}],
    "sources": {"hf": {"repo": "tiny-org/Huge"}},
}


@pytest.fixture(autouse=True)
def _sized(tiny_gguf: Path) -> None:
    ENTRY["files"] = [{"path": "tiny-llama.gguf", "size": tiny_gguf.stat().st_size}]


@pytest.fixture
def hub(tiny_gguf: Path):
    with FakeHub() as h:
        h.add_file("tiny-org/Tiny-GGUF", "tiny-llama.gguf", source=tiny_gguf)
        yield h


def make_window(qtbot: Any, hub: FakeHub) -> Any:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.models.catalog import parse_catalog
    from bubble_desktop.core.models.machine import Machine
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    paths = Paths.default().ensure()
    (paths.config_dir / "model_sources.json").write_text(
        json.dumps({"order": ["hf"], "endpoints": {"hf": hub.url}}), encoding="utf-8"
    )
    settings = Settings()
    settings.sampling.temperature = 0.0
    settings.sampling.max_new_tokens = 8
    store = ConversationStore(paths.chats_db)
    ctx = AppContext(
        paths,
        settings,
        store,
        ChatService(paths, None, None, store),
        load_model,
        model_catalog=parse_catalog({"entries": [ENTRY, TOO_BIG]}),
        machine=Machine(ram_total_gb=16, ram_available_gb=8, disk_free_gb=100),
    )
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    return window


def test_first_run_downloads_the_recommended_model_in_one_click_and_loads_it(
    qtbot: Any, hub: FakeHub
) -> None:
    window = make_window(qtbot, hub)
    try:
        panel = window.first_run
        assert window.chat_stack.currentWidget() is panel
        assert panel.download_button.isVisible() and "Tiny Llama" in panel.download_button.text()
        assert hub.requests == []  # nothing fetched before the click
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
        assert window.settings.model.path.endswith("tiny-llama.gguf")
        assert window.inference.model_info.dtype == "gguf"  # opened through llama.cpp
        window.send("Hello")
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=30_000)
        assert window.ctx.store.messages(window.conversation_id)[-1].status == "complete"
    finally:
        window.close()
        window.ctx.store.close()


def test_models_page_filters_downloads_uses_and_deletes(qtbot: Any, hub: FakeHub) -> None:
    window = make_window(qtbot, hub)
    try:
        window.open_models()
        page = window.models_dialog
        assert page.isVisible() and page.table.rowCount() == 2
        page.fits_filter.setChecked(True)  # the 10 TB one does not fit
        assert page.table.rowCount() == 1 and page.selected_id() == "tiny-llama-gguf"
        assert page.table.item(0, 4).text() == "runs well"
        assert not page.chat_button.isEnabled() and page.download_button.isEnabled()
        with qtbot.waitSignal(window.downloads.finished, timeout=60_000):
            qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.chat_button.isEnabled(), timeout=5_000)
        assert "✓" in page.table.item(0, 0).text() and "ready" in page.message.text()
        page.close()  # the downloaded model is used from the page, reopened
        window.open_models()
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            qtbot.mouseClick(page.chat_button, Qt.MouseButton.LeftButton)
        assert window.inference.model_info.dtype == "gguf"
        # delete: confirmed, the files go
        folder = Path(window.downloads.downloaded()["tiny-llama-gguf"]["folder"])
        from PySide6.QtWidgets import QMessageBox

        def confirm() -> None:
            box = page.findChild(QMessageBox)
            if box is not None:
                for b in box.buttons():
                    if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole:
                        b.click()

        from PySide6.QtCore import QTimer

        QTimer.singleShot(200, confirm)
        qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
        assert not folder.exists()
        assert "✓" not in page.table.item(0, 0).text()
    finally:
        window.close()
        window.ctx.store.close()


def test_hub_search_lists_gguf_files_downloads_the_chosen_one_and_uses_it(
    qtbot: Any, hub: FakeHub, tiny_gguf: Path
) -> None:
    """Search by name (sent only on Search), pick a GGUF of several, download it, chat with it."""
    data = tiny_gguf.read_bytes()
    hub.add_repo(
        "someone/Tiny-Chat-GGUF",
        {"tiny-chat.Q8_0.gguf": data + b"\0" * 64, "tiny-chat.Q4_K_M.gguf": data, "README.md": b"# hi"},
    )
    hub.add_repo("other/unrelated-model", {"config.json": b"{}", "model.safetensors": b"\0" * 32})
    window = make_window(qtbot, hub)
    try:
        window.open_models()
        page = window.models_dialog
        page.tabs.setCurrentIndex(1)
        assert hub.requests == []  # opening the page fetches nothing
        page.hub_query.setText("tiny-chat")
        with qtbot.waitSignal(window.downloads.searched, timeout=10_000):
            qtbot.mouseClick(page.hub_search_button, Qt.MouseButton.LeftButton)
        assert page.hub_table.rowCount() == 1 and page.hub_repo() == "someone/Tiny-Chat-GGUF"
        assert page.hub_table.item(0, 2).text() == "GGUF"
        assert page.message.text().startswith("1 model on ")  # not "1 models"
        qtbot.waitUntil(lambda: page.hub_files.count() == 2 and page.hub_files.isEnabled(), timeout=10_000)
        assert page.hub_files.currentText().startswith("tiny-chat.Q4_K_M.gguf")  # Q4_K_M first
        assert not page.hub_chat_button.isEnabled()
        with qtbot.waitSignal(window.downloads.finished, timeout=60_000):
            qtbot.mouseClick(page.hub_download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.hub_chat_button.isEnabled(), timeout=5_000)
        folder = Path(window.downloads.downloaded()["someone--Tiny-Chat-GGUF"]["folder"])
        assert sorted(p.name for p in folder.glob("*.gguf")) == [
            "tiny-chat.Q4_K_M.gguf"
        ]  # only the chosen one
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            qtbot.mouseClick(page.hub_chat_button, Qt.MouseButton.LeftButton)
        assert window.settings.model.path.endswith("tiny-chat.Q4_K_M.gguf")
        assert window.inference.model_info.dtype == "gguf"
    finally:
        window.close()
        window.ctx.store.close()


def test_hub_search_on_an_unreachable_hub_says_so_and_the_page_stays_usable(qtbot: Any, hub: FakeHub) -> None:
    window = make_window(qtbot, hub)
    paths = Paths.default()
    (paths.config_dir / "model_sources.json").write_text(
        json.dumps({"order": ["hf"], "endpoints": {"hf": "http://127.0.0.1:9"}}), encoding="utf-8"
    )
    try:
        window.open_models()
        page = window.models_dialog
        page.hub_query.setText("qwen")
        with qtbot.waitSignal(window.downloads.browse_failed, timeout=10_000):
            qtbot.mouseClick(page.hub_search_button, Qt.MouseButton.LeftButton)
        assert "Hugging Face" in page.message.text() and page.hub_search_button.isEnabled()
        assert page.hub_table.rowCount() == 0 and not page.hub_download_button.isEnabled()
    finally:
        window.close()
        window.ctx.store.close()


def test_sources_dialog_sets_the_order_and_a_hub_of_your_own(qtbot: Any) -> None:
    from bubble_desktop.core.models.sources import SourceConfig
    from bubble_desktop.ui.models_dialog import SourcesDialog

    paths = Paths.default().ensure()
    (paths.config_dir / "model_sources.json").write_text(
        json.dumps({"order": ["hf", "hf-mirror", "modelscope"]}), encoding="utf-8"
    )
    dialog = SourcesDialog(paths)
    qtbot.addWidget(dialog)
    assert [dialog.order.item(i).data(Qt.ItemDataRole.UserRole) for i in range(3)] == [
        "hf",
        "hf-mirror",
        "modelscope",
    ]
    dialog.order.setCurrentRow(1)
    dialog._move(-1)  # hf-mirror first
    dialog.order.item(2).setCheckState(Qt.CheckState.Unchecked)  # no ModelScope
    dialog.custom.setText("ftp://nope")
    dialog._on_save_clicked()
    assert "http" in dialog.message.text() and SourceConfig.load(paths).order[0] == "hf"  # refused, unchanged
    dialog.custom.setText("https://hub.example.lan/")
    dialog.token.setText(" hf_abc ")
    dialog._on_save_clicked()
    saved = SourceConfig.load(paths)
    assert saved.order == ["https://hub.example.lan", "hf-mirror", "hf"] and saved.hf_token == "hf_abc"
    assert saved.source("hf").token == "hf_abc" and not saved.source("hf-mirror").token
