"""End to end in the window with real parts: the tiny transformers model (A's loader), the real
ChatService and ConversationStore on disk. Send -> streamed answer appears and is saved; Stop
stops within a few decode steps; Regenerate; every thread ends when the window closes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings


def test_tiny_model_send_stop_regenerate(qtbot: Any, tiny_model_dir: Path) -> None:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    threads_before = set(threading.enumerate())
    paths = Paths.default().ensure()
    settings = Settings()
    settings.model.path = str(tiny_model_dir)
    settings.sampling.temperature = 0.0
    settings.sampling.max_new_tokens = 24
    store = ConversationStore(paths.chats_db)
    ctx = AppContext(paths, settings, store, ChatService(paths, None, None, store), load_model)
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            window.load_configured_model()
        assert "ready on CPU" in window.status.model_label.text()

        # send: the answer streams into the pane and is saved
        window.chat.input.setPlainText("What is the capital of France?")
        qtbot.keyClick(window.chat.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=60_000)
        answer = window.chat.view.messages[-1]
        assert answer.text and answer.error_label.isHidden()
        cid = window.conversation_id
        stored = store.messages(cid)
        assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
        assert stored[1].text == answer.text
        assert stored[1].stats and stored[1].stats["completion_tokens"] > 0
        assert "tokens/s" in window.status.speed_label.text()

        # regenerate: greedy decoding gives the same text, as version 2 of the answer (version 1 kept)
        old_id = stored[1].id
        window.chat.view.update_actions(False)
        qtbot.mouseClick(answer.regenerate_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=60_000)
        stored = store.messages(cid)
        assert len(stored) == 2 and stored[1].id == old_id
        assert (stored[1].version, stored[1].version_count) == (2, 2)
        assert [v.text for v in store.versions(old_id)] == [answer.text, answer.text]
        assert window.chat.view.messages[-1].text == stored[1].text == answer.text

        # stop: a long answer ends within a few decode steps of pressing Stop
        window.settings.sampling.max_new_tokens = 1500
        window.send("Tell me a very long story")
        qtbot.waitUntil(lambda: len(window.chat.view.messages[-1].text) > 0, timeout=60_000)
        t0 = time.perf_counter()
        qtbot.mouseClick(window.chat.stop_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=10_000)
        stop_s = time.perf_counter() - t0
        assert stop_s < 1.0, stop_s
        last = store.messages(cid)[-1]
        assert last.status == "stopped"
        assert last.stats is not None and last.stats["completion_tokens"] < 1500
    finally:
        window.close()
        store.close()
    assert not window.inference._thread.isRunning()
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive() and not t.daemon]
    assert not leftover, leftover


def test_first_run_opens_a_gguf_directly_and_streams_through_llama_cpp(qtbot: Any, tiny_gguf: Path) -> None:
    """Issue 10: the first-run panel's GGUF button opens the file as it is (no conversion); the status
    bar names what llama.cpp runs on; an answer streams and is saved (stop: test_llamacpp_tiny, bench)."""
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    paths = Paths.default().ensure()
    settings = Settings()
    settings.sampling.temperature = 0.0
    settings.sampling.max_new_tokens = 24
    store = ConversationStore(paths.chats_db)
    converted: list[str] = []
    ctx = AppContext(
        paths,
        settings,
        store,
        ChatService(paths, None, None, store),
        load_model,
        import_gguf=lambda path, **kw: converted.append(path),
    )
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    try:
        assert window.chat_stack.currentWidget() is window.first_run
        assert window.first_run.gguf_button.objectName() == "openGgufButton"
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            window.first_run.gguf_chosen.emit(str(tiny_gguf))
        assert converted == []  # opened, not converted
        assert window.settings.model.path == str(tiny_gguf)
        assert window.chat_stack.currentWidget() is window.chat
        label = window.status.model_label.text()
        assert "ready on CPU · " in label and "thread" in label, label
        assert window.inference.model_info.dtype == "gguf"

        window.send("Hello, how are you today?")
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=30_000)
        stored = store.messages(window.conversation_id)
        assert stored[-1].status == "complete" and stored[-1].stats["completion_tokens"] == 24

    finally:
        window.close()
        store.close()
