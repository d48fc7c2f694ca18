"""Settings → API server in the window: the switch starts the local OpenAI-compatible server on the
model the window loaded (one copy, shared lock), the status bar says where, the chat pane keeps
working while an API client streams, and switching it off closes the port."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings


def test_api_switch_serves_the_loaded_model_beside_the_chat_pane(qtbot: Any, tiny_model_dir: Path) -> None:
    from openai import OpenAI

    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    paths = Paths.default().ensure()
    settings = Settings()
    settings.model.path = str(tiny_model_dir)
    settings.sampling.temperature = 0.0
    settings.sampling.max_new_tokens = 16
    store = ConversationStore(paths.chats_db)
    calls: list[Any] = []
    counting_load = lambda request, progress: calls.append(request) or load_model(request, progress)  # noqa: E731
    ctx = AppContext(paths, settings, store, ChatService(paths, None, None, store), counting_load)
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            window.load_configured_model()
        assert not window.status.api_label.isVisible()

        on = settings.model_copy(deep=True)
        on.api.enabled = True
        on.api.port = 0  # a free port
        with qtbot.waitSignal(window.api.state_changed, timeout=20_000) as started:
            window._on_settings_dialog_settings_changed(on)
        address, error = started.args
        assert error == "" and address.startswith("127.0.0.1:")
        assert window.status.api_label.isVisible() and window.status.api_label.text() == f"API on {address}"

        client = OpenAI(base_url=f"http://{address}/v1", api_key="none", max_retries=0, timeout=60)
        models = [m.id for m in client.models.list().data]
        assert models, models
        streamed: list[str] = []

        def api_client() -> None:
            stream = client.chat.completions.create(
                model=models[0],
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=16,
                temperature=0,
                stream=True,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    streamed.append(chunk.choices[0].delta.content)

        t = threading.Thread(target=api_client)
        t.start()
        window.send("What is the capital of France?")  # the chat pane at the same time
        qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=60_000)
        t.join(60)
        assert not t.is_alive() and "".join(streamed)
        stored = store.messages(window.conversation_id)
        assert stored[-1].status == "complete" and stored[-1].text
        assert len(calls) == 1  # the API used the window's model: no second load

        with qtbot.waitSignal(window.api.state_changed, timeout=20_000) as stopped:
            window._on_settings_dialog_settings_changed(settings)
        assert stopped.args == ["", ""]
        assert not window.status.api_label.isVisible()
        host, port = address.rsplit(":", 1)
        with socket.socket() as s:
            assert s.connect_ex((host, int(port))) != 0  # the port is closed
    finally:
        window.close()
        store.close()
