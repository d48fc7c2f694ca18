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
