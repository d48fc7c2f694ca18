"""The main window with the real ChatService + ConversationStore and a scripted chat model (fast),
plus single instance, crash handler, first run and shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from bubble_desktop.core.errors import RemoteCodeConsentRequired
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, LoadRequest, ModelInfo
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import SamplingSettings, Settings

ANSWER = "# Answer\n\nHere is **bold** text.\n\n```python\nprint(1)\n```\n\n- one\n- two\n"


class ScriptedModel:
    """A ChatModel that streams a fixed text in small chunks; ``slow`` keeps it going until stopped."""

    def __init__(self, text: str = ANSWER, slow: bool = False) -> None:
        self.info = ModelInfo("scripted", "/models/scripted", "llama", "cpu", "float32", 4096)
        self.text = text
        self.slow = slow
        self.prompts: list[list[ChatMessage]] = []
        self.unloaded = False

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        self.prompts.append(list(messages))
        cancel = cancel or threading.Event()
        gen: Generation

        def chunks() -> Iterator[str]:
            started = time.perf_counter()
            n = 0
            pieces = [self.text[i : i + 3] for i in range(0, len(self.text), 3)]
            reason = "stop"
            while True:
                for piece in pieces:
                    if cancel.is_set():
                        reason = "cancelled"
                        break
                    n += 1
                    yield piece
                    if self.slow:
                        cancel.wait(0.002)  # a "decode step"
                else:
                    if self.slow:
                        continue
                break
            total = time.perf_counter() - started
            gen.stats = GenerationStats(10, n, 0.01, n / max(total, 1e-6), total, reason)  # type: ignore[arg-type]

        gen = Generation(chunks())
        return gen

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content) // 4 + 4 for m in messages)

    def unload(self) -> None:
        self.unloaded = True


class Loader:
    """load_function for the window: returns the model, or raises what it is told to."""

    def __init__(self, model: Any, fail_first: Exception | None = None) -> None:
        self.model = model
        self.fail_first = fail_first
        self.requests: list[LoadRequest] = []

    def __call__(self, request: LoadRequest, progress: Any) -> Any:
        self.requests.append(request)
        progress(0.5, "Loading weights")
        if self.fail_first is not None:
            exc, self.fail_first = self.fail_first, None
            raise exc
        return self.model


def make_window(
    qtbot: Any, model_path: str = "/models/scripted", loader: Any = None, **ctx_extra: Any
) -> Any:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    paths = Paths.default().ensure()
    settings = Settings()
    settings.model.path = model_path
    store = ConversationStore(paths.chats_db)
    service = ChatService(paths, None, None, store)
    ctx = AppContext(paths, settings, store, service, loader or Loader(ScriptedModel()), **ctx_extra)
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    return window


def close_window(window: Any) -> None:
    window.close()
    window.ctx.store.close()


@pytest.fixture
def window(qtbot: Any) -> Iterator[Any]:
    w = make_window(qtbot)
    w.load_configured_model()
    with qtbot.waitSignal(w.model_ready, timeout=5000):
        pass
    yield w
    close_window(w)


def wait_idle(qtbot: Any, window: Any, timeout: int = 5000) -> None:
    qtbot.waitUntil(lambda: not window.inference.is_busy, timeout=timeout)


def test_send_streams_markdown_and_saves(qtbot: Any, window: Any) -> None:
    assert "ready on CPU" in window.status.model_label.text()
    window.chat.input.setPlainText("What is Bubble?")
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Return)
    assert window.chat.busy and window.chat.stop_button.isVisible()
    wait_idle(qtbot, window)
    messages = window.chat.view.messages
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages[1]
    assert answer.text == ANSWER
    assert "Answer" in answer.body.toPlainText() and "print(1)" in answer.body.toPlainText()
    assert answer.body.codes == ["print(1)"]
    assert "tokens" in answer.stats_label.text()
    assert not window.chat.busy
    # saved: a conversation with the question and the answer, listed in the sidebar
    cid = window.conversation_id
    assert cid is not None and window.sidebar.ids() == [cid]
    stored = window.ctx.store.messages(cid)
    assert [(m.role, m.text, m.status) for m in stored] == [
        ("user", "What is Bubble?", "complete"),
        ("assistant", ANSWER, "complete"),
    ]
    assert answer.message_id == stored[1].id and messages[0].message_id == stored[0].id
    assert window.chat.title_label.text() == "What is Bubble?"
    # status bar speed and tokens
    assert "tokens/s" in window.status.speed_label.text()


def test_shift_enter_is_a_new_line(qtbot: Any, window: Any) -> None:
    window.chat.input.setPlainText("line one")
    window.chat.input.moveCursor(window.chat.input.textCursor().MoveOperation.End)
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert window.chat.input.toPlainText() == "line one\n"
    assert window.chat.view.messages == []


def test_stop_button_and_escape_stop_quickly(qtbot: Any) -> None:
    model = ScriptedModel(slow=True)
    w = make_window(qtbot, loader=Loader(model))
    try:
        w.load_configured_model()
        qtbot.waitUntil(lambda: w.inference.model_info is not None, timeout=5000)
        for how in ("button", "escape"):
            w.send("Tell me a long story")
            answer = w.chat.view.messages[-1]
            qtbot.waitUntil(lambda a=answer: len(a.text) > 30, timeout=5000)
            t0 = time.perf_counter()
            if how == "button":
                qtbot.mouseClick(w.chat.stop_button, Qt.MouseButton.LeftButton)
            else:
                qtbot.keyClick(w.chat.input, Qt.Key.Key_Escape)
            wait_idle(qtbot, w)
            elapsed = time.perf_counter() - t0
            assert elapsed < 1.0, elapsed
            assert answer.status.text() == "stopped"
            stored = w.ctx.store.messages(w.conversation_id)[-1]
            assert stored.status == "stopped" and stored.text and answer.text.startswith(stored.text[:20])
    finally:
        close_window(w)


def test_regenerate_adds_a_version_of_the_last_answer(qtbot: Any, window: Any) -> None:
    window.send("First question")
    wait_idle(qtbot, window)
    cid = window.conversation_id
    first_answer_id = window.ctx.store.messages(cid)[-1].id
    window.chat.view.update_actions(False)
    last = window.chat.view.messages[-1]
    assert last.regenerate_button.isVisibleTo(window)
    qtbot.mouseClick(last.regenerate_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window)
    stored = window.ctx.store.messages(cid)
    assert [m.role for m in stored] == ["user", "assistant"]
    # the new answer is version 2 of the same message; version 1 is kept (tests/ui/test_chat_versions.py)
    assert stored[-1].id == first_answer_id and stored[-1].text == ANSWER
    assert (stored[-1].version, stored[-1].version_count) == (2, 2)
    assert [m.role for m in window.chat.view.messages] == ["user", "assistant"]


def test_edit_and_resend(qtbot: Any, window: Any) -> None:
    window.send("Original question")
    wait_idle(qtbot, window)
    question = window.chat.view.messages[0]
    qtbot.mouseClick(question.edit_button, Qt.MouseButton.LeftButton)
    assert window.chat.edit_banner.isVisibleTo(window)
    assert window.chat.input.toPlainText() == "Original question"
    window.chat.input.setPlainText("Edited question")
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Return)
    wait_idle(qtbot, window)
    stored = window.ctx.store.messages(window.conversation_id)
    assert [(m.role, m.text) for m in stored] == [("user", "Edited question"), ("assistant", ANSWER)]
    assert [m.text for m in window.chat.view.messages] == ["Edited question", ANSWER]


def test_sidebar_open_rename_search_delete(qtbot: Any, window: Any) -> None:
    window.send("Apples are red")
    wait_idle(qtbot, window)
    first = window.conversation_id
    window.new_chat()
    assert window.chat.view.messages == [] and window.conversation_id is None
    window.send("Bananas are yellow")
    wait_idle(qtbot, window)
    second = window.conversation_id
    assert set(window.sidebar.ids()) == {first, second}
    # open the first one: its messages come back from the store
    window.open_conversation(first)
    assert [m.text for m in window.chat.view.messages] == ["Apples are red", ANSWER]
    # rename, search (title and message text), delete
    window.sidebar.rename(first, "Fruit colours")
    assert window.chat.title_label.text() == "Fruit colours"
    window.sidebar.search.setText("Bananas")
    assert window.sidebar.ids() == [second]
    window.sidebar.search.setText("")
    window.sidebar.delete(first, confirm=False)
    assert window.sidebar.ids() == [second]
    assert window.conversation_id is None and window.chat.view.messages == []


def test_switching_chat_mid_answer_keeps_it_going_in_the_background(qtbot: Any) -> None:
    """Issue 16.4: leaving a chat while its answer is written no longer stops it (it used to be
    saved as "stopped" after a token); the sidebar marks it and it is saved complete."""
    model = ScriptedModel("word " * 400)
    gate = threading.Event()
    w = make_window(qtbot, loader=Loader(GatedModel(model, gate)))
    try:
        w.load_configured_model()
        qtbot.waitUntil(lambda: w.inference.model_info is not None, timeout=5000)
        w.send("Long one")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 10, timeout=5000)
        old = w.conversation_id
        w.new_chat()
        assert w.chat.view.messages == [] and not w.chat.busy and w.chat.send_button.isEnabled()
        assert w.inference.is_busy and w.sidebar.answering_state(old) == "answering"
        gate.set()
        wait_idle(qtbot, w)
        saved = w.ctx.store.messages(old)[-1]
        assert (saved.status, saved.text) == ("complete", "word " * 400)
        assert w.sidebar.answering_state(old) is None and w.chat.view.messages == []
    finally:
        gate.set()
        close_window(w)


class GatedModel:
    """Wraps a ScriptedModel: after its first chunks, each chunk waits until ``gate`` is set."""

    def __init__(self, model: ScriptedModel, gate: threading.Event) -> None:
        self.model, self.gate, self.info = model, gate, model.info

    def stream(
        self, messages: Sequence[ChatMessage], sampling: SamplingSettings, cancel: Any = None
    ) -> Generation:
        inner = self.model.stream(messages, sampling, cancel)
        gate = self.gate

        def chunks() -> Iterator[str]:
            for n, chunk in enumerate(inner):
                if n >= 5:
                    while not gate.wait(0.01):
                        if cancel is not None and cancel.is_set():
                            break
                yield chunk
            gen.stats = inner.stats

        gen = Generation(chunks())
        return gen

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.model.count_tokens(messages)

    def unload(self) -> None:
        self.model.unload()


def test_web_toggle_shows_online_indicator_and_is_saved(qtbot: Any, window: Any) -> None:
    window.send("hello")
    wait_idle(qtbot, window)
    assert not window.chat.online_label.isVisibleTo(window)
    window.chat.web_button.setChecked(True)
    assert window.chat.online_label.isVisibleTo(window)
    assert window.ctx.store.get_conversation(window.conversation_id).web is True
    window.chat.set_knowledge_bases(["notes", "manuals"])
    action = window.chat.kb_menu.actions()[0]
    action.setChecked(True)
    assert window.chat.kb_names == ("notes",)
    assert window.ctx.store.get_conversation(window.conversation_id).kb_names == ("notes",)
    assert "notes" in window.chat.kb_button.text()


def test_first_run_panel_then_gguf_import_loads_the_model(qtbot: Any, tmp_path: Path) -> None:
    imported = tmp_path / "models" / "imported"

    def fake_import(path: str, models_dir: Path, progress: Any) -> Path:
        progress(0.5, "Converting tensors")
        imported.mkdir(parents=True)
        return imported

    w = make_window(qtbot, model_path="", import_gguf=fake_import)
    try:
        assert w.chat_stack.currentWidget() is w.first_run
        assert w.first_run.table.rowCount() >= 5  # recommended models with memory needs
        assert "GB" in w.first_run.table.item(0, 1).text()
        w.load_configured_model()  # nothing configured: stays on the panel
        assert w.chat_stack.currentWidget() is w.first_run
        with qtbot.waitSignal(w.model_ready, timeout=5000):
            w.import_gguf(str(tmp_path / "x.gguf"))
        assert w.chat_stack.currentWidget() is w.chat
        assert w.settings.model.path == str(imported)
        assert w.inference.model_info is not None
        from bubble_desktop.core.settings import load_settings

        assert load_settings(w.ctx.paths.settings_file)[0].model.path == str(imported)
    finally:
        close_window(w)


def test_load_failure_is_shown(qtbot: Any) -> None:
    from bubble_desktop.core.errors import ModelNotFoundError

    loader = Loader(ScriptedModel(), fail_first=ModelNotFoundError("No model in /nowhere."))
    w = make_window(qtbot, loader=loader)
    try:
        w.load_configured_model()
        qtbot.waitUntil(lambda: "not loaded" in w.status.model_label.text(), timeout=5000)
        assert "/nowhere" in w.status.model_label.text()
        w.send("hi")  # no model: an inline error, nothing hangs
        assert not w.chat.view.messages[-1].error_label.isHidden()
        assert not w.inference.is_busy
    finally:
        close_window(w)


def test_remote_code_consent_is_asked_and_remembered(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bubble_desktop.core.llm.consent import ConsentStore
    from bubble_desktop.ui.main_window import MainWindow

    asked: list[str] = []
    monkeypatch.setattr(
        MainWindow, "_ask_remote_code_consent", lambda self, path, failure: asked.append(path) or True
    )
    folder = tmp_path / "glm"
    folder.mkdir()
    (folder / "config.json").write_text('{"auto_map": {}}')
    (folder / "modeling_glm.py").write_text("# the model's own code\n")
    consent = ConsentStore(Paths.default().consent_file)
    loader = Loader(ScriptedModel(), fail_first=RemoteCodeConsentRequired("It ships code."))
    w = make_window(qtbot, model_path=str(folder), loader=loader, consent=consent)
    try:
        with qtbot.waitSignal(w.model_ready, timeout=5000):
            w.load_configured_model()
        assert asked == [str(folder)]
        assert [r.trust_remote_code for r in loader.requests] == [False, True]
        assert consent.is_trusted(folder)
        assert w.load_request().trust_remote_code  # remembered for the next load
    finally:
        close_window(w)


def test_close_mid_answer_exits_fast_and_keeps_the_partial_answer(qtbot: Any) -> None:
    model = ScriptedModel(slow=True)
    w = make_window(qtbot, loader=Loader(model))
    w.load_configured_model()
    qtbot.waitUntil(lambda: w.inference.model_info is not None, timeout=5000)
    w.send("Long story")
    qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 20, timeout=5000)
    cid = w.conversation_id
    t0 = time.perf_counter()
    w.close()
    assert time.perf_counter() - t0 < 2.0
    assert not w.inference._thread.isRunning()
    assert model.unloaded
    stored = w.ctx.store.messages(cid)[-1]
    assert stored.status == "stopped" and stored.text
    w.ctx.store.close()


def test_single_instance_second_launch_activates_the_first(qtbot: Any, tmp_path: Path) -> None:
    from bubble_desktop.ui.single_instance import SingleInstance

    first = SingleInstance(tmp_path / "data")
    assert first.acquire()
    second = SingleInstance(tmp_path / "data")
    with qtbot.waitSignal(first.activation_requested, timeout=3000):
        assert not second.acquire()
    assert second.notified_other
    other_folder = SingleInstance(tmp_path / "other")
    assert other_folder.acquire()  # another data folder is another instance
    other_folder.release()
    first.release()
    third = SingleInstance(tmp_path / "data")
    assert third.acquire()  # released: the next launch gets it
    third.release()


def test_crash_handler_logs_and_shows_one_dialog(qtbot: Any, tmp_path: Path) -> None:
    import logging

    from bubble_desktop.core.logs import setup_logging
    from bubble_desktop.ui.crash import CrashHandler

    log_file = setup_logging(tmp_path / "logs")
    handler = CrashHandler(log_file)
    handler.install()
    try:

        def boom() -> None:
            raise RuntimeError("worker exploded")

        t = threading.Thread(target=boom, name="crashy")
        with qtbot.waitSignal(handler.crash_reported, timeout=3000):
            t.start()
            t.join()
        try:
            raise ValueError("gui exploded")
        except ValueError as exc:
            with qtbot.waitSignal(handler.crash_reported, timeout=3000):
                import sys

                sys.excepthook(type(exc), exc, exc.__traceback__)
        dialog = handler.dialog
        assert dialog is not None and dialog.isVisible() and not dialog.isModal()
        text = dialog.details.toPlainText()
        assert "worker exploded" in text and "gui exploded" in text and "crashy" in text
        assert dialog.reports == 2  # one dialog, two reports
        for h in logging.getLogger("bubble_desktop").handlers:
            h.flush()
        logged = log_file.read_text(encoding="utf-8")
        assert "worker exploded" in logged and "Traceback" in logged
        dialog.close()
    finally:
        handler.uninstall()


def test_app_starts_without_torch_and_quits_by_itself(tmp_path: Path) -> None:
    """`bubble` shows its window's frame, then builds it after the first paint, without importing
    torch/transformers, writes its log, and BUBBLE_AUTOQUIT_MS ends it."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "real_exec = QApplication.exec\n"
        "def exec_(self):\n"
        "    heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "    print('HEAVY', heavy, flush=True)\n"
        "    return real_exec()\n"
        "QApplication.exec = exec_\n"
        "from bubble_desktop.ui.main_window import MainWindow\n"
        "real_build = MainWindow.build\n"
        "def build(self, ctx):\n"
        "    real_build(self, ctx)\n"
        "    print('BUILT', self.is_built, self.isVisible(), "
        "type(self.centralWidget()).__name__, flush=True)\n"
        "MainWindow.build = build\n"
        "from bubble_desktop.app import main\n"
        "sys.exit(main(['bubble']))\n"
    )
    env = dict(
        os.environ, BUBBLE_HOME=str(tmp_path / "home"), BUBBLE_AUTOQUIT_MS="200", QT_QPA_PLATFORM="offscreen"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "BUILT True True QSplitter" in done.stdout, done.stdout  # after the frame was shown
    assert done.stdout.index("HEAVY") < done.stdout.index("BUILT")
    assert (Paths.under(tmp_path / "home").log_dir / "bubble.log").exists()
    # a second launch on the same data folder while the first runs: refused, the first keeps it
    from bubble_desktop.ui.single_instance import SingleInstance

    holder = SingleInstance(Paths.under(tmp_path / "home").data_dir)
    assert holder.acquire()
    try:
        second = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 0
        assert "already running" in second.stderr and "HEAVY" not in second.stdout
    finally:
        holder.release()


def test_knowledge_opens_after_show_and_feeds_the_chat_choice(qtbot: Any) -> None:
    """finish_startup opens the knowledge service after the window is up; bases become chat choices."""
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.ui.knowledge_tab import KnowledgeTab

    paths = Paths.default().ensure()
    opened: list[Any] = []

    def factory() -> Any:
        opened.append(KnowledgeService(paths, Settings().knowledge))
        return opened[-1]

    w = make_window(qtbot, knowledge_factory=factory)
    try:
        assert not isinstance(w.knowledge_tab, KnowledgeTab)  # placeholder while starting
        with qtbot.waitSignal(w.model_ready, timeout=5000):
            w.finish_startup()
        assert isinstance(w.knowledge_tab, KnowledgeTab)
        assert w.tabs.widget(1) is w.knowledge_tab
        assert w.ctx.chat_service.knowledge is opened[0]
        w.knowledge_tab.create_base("notes")
        qtbot.waitUntil(lambda: "notes" in [a.text() for a in w.chat.kb_menu.actions()], timeout=10_000)
    finally:
        close_window(w)
        for service in opened:
            service.close()


def test_frame_first_then_built_in_place(qtbot: Any) -> None:
    """`MainWindow(None)` is the frame `bubble` shows at once: it paints, can be closed unbuilt, and
    `build(ctx)` turns the same window into the full one (what app.main does after the first paint)."""
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.ui.main_window import AppContext, MainWindow, StartingView

    frame = MainWindow(None)
    qtbot.addWidget(frame)
    assert isinstance(frame.centralWidget(), StartingView) and not frame.is_built
    starting = frame.centralWidget()
    with qtbot.waitSignal(starting.painted, timeout=5000):
        frame.show()
    paths = Paths.default().ensure()
    store = ConversationStore(paths.chats_db)
    ctx = AppContext(paths, Settings(), store, ChatService(paths, None, None, store), Loader(ScriptedModel()))
    frame.build(ctx)
    assert frame.is_built and frame.isVisible() and frame.statusBar() is frame.status
    assert frame.tabs.count() == 2
    qtbot.waitUntil(lambda: frame.sidebar.isVisible() and frame.chat_stack.isVisible(), timeout=5000)
    close_window(frame)

    unbuilt = MainWindow(None)
    qtbot.addWidget(unbuilt)
    unbuilt.show()
    unbuilt.close()  # closing before it was built: nothing to stop, no error
    unbuilt.shutdown()


def test_gguf_conversion_error_reaches_the_user_when_a_model_is_loaded(qtbot: Any, tmp_path: Path) -> None:
    """The failure of File → Convert GGUF shows in a box when the first-run panel is hidden (issue 16.11)."""
    from bubble_desktop.core.errors import ModelError

    def failing_import(path: str, models_dir: Path, progress: Any) -> Path:
        raise ModelError("transformers cannot read this GGUF file.", "Try the original model.")

    w = make_window(qtbot, import_gguf=failing_import)
    try:
        w.load_configured_model()
        qtbot.waitUntil(lambda: w.inference.model_info is not None, timeout=5000)
        assert not w.first_run.isVisible()
        w.import_gguf(str(tmp_path / "x.gguf"))
        qtbot.waitUntil(lambda: getattr(w, "last_error_box", None) is not None, timeout=5000)
        box = w.last_error_box
        assert box.isVisible() and "cannot read this GGUF" in box.text()
        assert box.informativeText() == "Try the original model."
        assert not w.first_run.progress.isVisibleTo(w.first_run)  # the hidden panel is not left "busy"
        box.close()
    finally:
        close_window(w)


def test_gguf_already_converted_offers_to_load_it(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second conversion of the same file asks (load it / convert again) instead of failing."""
    from bubble_desktop.ui.main_window import MainWindow

    calls: list[dict[str, Any]] = []

    def fake_import(path: str, models_dir: Path, progress: Any, **options: Any) -> Path:
        calls.append(options)
        return models_dir / "x"

    w = make_window(qtbot, import_gguf=fake_import)
    try:
        existing = w.ctx.paths.models_dir / "x"
        existing.mkdir(parents=True)
        (existing / "config.json").write_text("{}", encoding="utf-8")
        monkeypatch.setattr(MainWindow, "_ask_about_existing_conversion", lambda self, folder: "use")
        w.import_gguf(str(tmp_path / "x.gguf"))
        assert calls == [] and w.settings.model.path == str(existing)
        monkeypatch.setattr(MainWindow, "_ask_about_existing_conversion", lambda self, folder: "replace")
        w.import_gguf(str(tmp_path / "x.gguf"))
        qtbot.waitUntil(lambda: calls == [{"overwrite": True}], timeout=5000)
        qtbot.waitUntil(lambda: not w._gguf_task.is_running(), timeout=5000)
    finally:
        close_window(w)


def test_export_from_the_sidebar_menu_and_the_file_menu(qtbot: Any, window: Any, tmp_path: Path) -> None:
    """Export as Markdown/JSON is offered in the sidebar's context menu and the File menu (issue 16.10)."""
    import json

    window.send("Show code")
    wait_idle(qtbot, window)
    cid = window.conversation_id
    file_menu = window.menuBar().actions()[0].menu()
    file_menu.aboutToShow.emit()
    texts = [a.text().replace("&", "") for a in file_menu.actions()]
    assert "Export chat as Markdown…" in texts and "Export chat as JSON…" in texts
    assert window.export_markdown_action.isEnabled()
    md = window.sidebar.export(cid, "md", str(tmp_path / "chat.md"))
    assert md and "print(1)" in Path(md).read_text(encoding="utf-8")
    js = window.sidebar.export(cid, "json", str(tmp_path / "chat.json"))
    assert js and json.loads(Path(js).read_text(encoding="utf-8"))["messages"][1]["text"] == ANSWER
    window.new_chat()
    file_menu.aboutToShow.emit()
    assert not window.export_markdown_action.isEnabled()


def test_choosing_a_knowledge_base_warms_the_embedding_model(qtbot: Any) -> None:
    """A chat that chooses a knowledge base (or is opened with one) loads the embedding model in the
    background: the first question waited ~5 s for it before retrieval. A chat without one never does."""
    from bubble_desktop.core.kb.service import KnowledgeService

    service = KnowledgeService(Paths.default().ensure(), Settings().knowledge)
    service.create_base("notes")
    calls: list[int] = []
    service.warm_up = lambda: bool(calls.append(1)) or True  # type: ignore[method-assign]
    w = make_window(qtbot, knowledge=service)
    try:
        w.load_configured_model()
        qtbot.waitUntil(lambda: "notes" in [a.text() for a in w.chat.kb_menu.actions()], timeout=10_000)
        w.send("hello")
        wait_idle(qtbot, w)
        assert calls == []  # no knowledge base chosen: nothing loaded
        w.chat.kb_menu.actions()[0].setChecked(True)
        assert calls == [1]
        conversation = w.conversation_id
        w.new_chat()
        before = len(calls)  # (a bases refresh from the Knowledge tab warms too, as it may arrive)
        w.open_conversation(conversation)  # its saved choice: warmed again (a no-op once loaded)
        assert len(calls) == before + 1
    finally:
        close_window(w)
        service.close()


def test_a_model_notice_is_shown_in_words_when_it_loads(qtbot: Any) -> None:
    """A GGUF whose chat template llama.cpp could not use: the status bar says so in words for a
    while, then keeps a ⚠ after the ready state (tooltip: the words)."""
    from dataclasses import replace

    model = ScriptedModel()
    notice = "llama.cpp cannot use the chat template in odd.gguf: the model gets a plain instruction format."
    model.info = replace(model.info, notices=(notice,))
    w = make_window(qtbot, loader=Loader(model))
    try:
        with qtbot.waitSignal(w.model_ready, timeout=5000):
            w.load_configured_model()
        assert w.status.currentMessage() == f"⚠ {notice}"
        assert w.status.model_label.text().endswith("⚠") and notice in w.status.model_label.toolTip()
    finally:
        close_window(w)
