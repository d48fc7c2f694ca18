"""Issue 16 items 4, 5, 9 in the real window (real ChatService + ConversationStore on disk, a
scripted model): answers go on in the background when the user switches chats, notices come back
when a conversation is reopened, and Regenerate keeps earlier versions (‹ 1/2 ›)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, QTimer

from bubble_desktop.core.llm.base import ChatMessage, Generation
from bubble_desktop.core.settings import SamplingSettings
from bubble_desktop.core.web.search import DdgsSearcher, SearchRequest
from tests.ui.test_main_window import GatedModel, Loader, ScriptedModel, close_window, make_window, wait_idle


class TakesTurns(ScriptedModel):
    """Answers with the next text of ``texts`` each time it is asked."""

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__(texts[0])
        self.texts = list(texts)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        self.text = self.texts[min(len(self.prompts), len(self.texts) - 1)]
        return super().stream(messages, sampling, cancel)


def _ready(qtbot: Any, model: Any, **extra: Any) -> Any:
    w = make_window(qtbot, loader=Loader(model), **extra)
    w.load_configured_model()
    qtbot.waitUntil(lambda: w.inference.model_info is not None, timeout=5000)
    return w


def _item(w: Any, cid: int) -> Any:
    return next(w.sidebar.list.item(i) for i in range(w.sidebar.list.count()) if w.sidebar.ids()[i] == cid)


def test_switch_back_to_an_answer_still_being_written(qtbot: Any) -> None:
    gate = threading.Event()
    w = _ready(qtbot, GatedModel(ScriptedModel("word " * 300), gate))
    try:
        w.send("Long one")
        so_far = "word " * 3  # five 3-character chunks pass the gate
        qtbot.waitUntil(lambda: w.chat.view.messages[-1].text == so_far, timeout=5000)
        first = w.conversation_id
        w.new_chat()
        # the sidebar shows it is still answering: a spinner icon and a tooltip
        item = _item(w, first)
        assert w.sidebar.answering_state(first) == "answering"
        assert not item.icon().isNull() and "Answering" in item.toolTip()
        # back to it: the text so far is there and goes on streaming in the same pane
        w.open_conversation(first)
        answer = w.chat.view.messages[-1]
        assert [m.role for m in w.chat.view.messages] == ["user", "assistant"]
        assert answer.text == so_far and answer.body.is_streaming
        # the streaming renderer holds back the open tail's trailing blanks until more text comes
        assert answer.body.toPlainText() == so_far.rstrip()
        assert w.chat.busy and w.chat.stop_button.isVisibleTo(w)
        gate.set()
        wait_idle(qtbot, w)
        assert answer.text == "word " * 300 and not answer.body.is_streaming
        assert "tokens" in answer.stats_label.text() and not w.chat.busy
        assert w.ctx.store.messages(first)[-1].status == "complete"
        assert _item(w, first).icon().isNull()
    finally:
        gate.set()
        close_window(w)


def test_asking_in_another_chat_waits_for_its_turn(qtbot: Any) -> None:
    gate = threading.Event()
    inner = TakesTurns(["first " * 100, "second answer"])
    w = _ready(qtbot, GatedModel(inner, gate))
    try:
        w.send("One")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        first = w.conversation_id
        w.new_chat()
        w.send("Two")
        second = w.conversation_id
        # the new chat is saved at once (listed, marked waiting); its answer says it waits
        assert second is not None and second != first and set(w.sidebar.ids()) == {first, second}
        waiting = w.chat.view.messages[-1]
        assert "waiting" in waiting.status.text() and w.chat.busy
        assert w.sidebar.answering_state(second) == "waiting"
        assert "Waiting" in _item(w, second).toolTip()
        # Stop in this chat would cancel only this one; Send is off until it is answered
        assert not w.chat.send_button.isEnabled()
        gate.set()
        qtbot.waitUntil(
            lambda: waiting.text == "second answer" and not waiting.body.is_streaming, timeout=5000
        )
        wait_idle(qtbot, w)
        assert [m.text for m in w.ctx.store.messages(first)] == ["One", "first " * 100]
        assert [m.text for m in w.ctx.store.messages(second)] == ["Two", "second answer"]
        assert len(inner.prompts) == 2 and inner.prompts[1][-1].content == "Two"
    finally:
        gate.set()
        close_window(w)


def test_stopping_a_waiting_answer_leaves_the_running_one(qtbot: Any) -> None:
    gate = threading.Event()
    w = _ready(qtbot, GatedModel(ScriptedModel("going " * 50), gate))
    try:
        w.send("One")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        first = w.conversation_id
        w.new_chat()
        w.send("Two")
        second = w.conversation_id
        qtbot.mouseClick(w.chat.stop_button, Qt.MouseButton.LeftButton)
        gate.set()
        wait_idle(qtbot, w)
        assert w.ctx.store.messages(first)[-1].status == "complete"
        assert w.ctx.store.messages(second)[-1].status == "stopped"
    finally:
        gate.set()
        close_window(w)


class FailingProvider:
    def search(self, request: SearchRequest) -> list[dict[str, Any]]:
        raise RuntimeError("network is unreachable")


def test_notices_come_back_when_the_conversation_is_reopened(qtbot: Any) -> None:
    w = _ready(qtbot, ScriptedModel("Answered without the web."))
    w.ctx.chat_service._web = DdgsSearcher(FailingProvider())
    try:
        w.chat.web_button.setChecked(True)
        w.send("Any news?")
        wait_idle(qtbot, w)
        answer = w.chat.view.messages[-1]
        shown = answer.notice_label.text()
        assert shown and "eb search" in shown and answer.notice_label.isVisibleTo(w)
        cid = w.conversation_id
        w.new_chat()
        w.open_conversation(cid)
        again = w.chat.view.messages[-1]
        assert again.notice_label.text() == shown
        qtbot.waitUntil(lambda: again.notice_label.isVisibleTo(w), timeout=2000)  # shown by a queued call
    finally:
        close_window(w)


def test_regenerate_keeps_versions_and_the_arrows_flip_them(qtbot: Any) -> None:
    model = TakesTurns(["Paris.", "Paris, on the Seine.", "About two million."])
    w = _ready(qtbot, model)
    try:
        w.send("Capital of France?")
        wait_idle(qtbot, w)
        first = w.chat.view.messages[-1]
        assert not first.version_bar.isVisibleTo(w)  # one version: no arrows
        qtbot.mouseClick(first.regenerate_button, Qt.MouseButton.LeftButton)
        wait_idle(qtbot, w)
        answer = w.chat.view.messages[-1]
        assert answer.text == "Paris, on the Seine."
        assert answer.version_bar.isVisibleTo(w) and answer.version_label.text() == "2/2"
        assert answer.previous_version_button.isEnabled() and not answer.next_version_button.isEnabled()
        # ‹ shows the first version again and makes it the one the conversation goes on from
        qtbot.mouseClick(answer.previous_version_button, Qt.MouseButton.LeftButton)
        assert answer.text == "Paris." and "Paris." in answer.body.toPlainText()
        assert answer.version_label.text() == "1/2" and answer.next_version_button.isEnabled()
        cid = w.conversation_id
        assert w.ctx.store.messages(cid)[-1].text == "Paris."
        # reopened: still 1/2
        w.new_chat()
        w.open_conversation(cid)
        reopened = w.chat.view.messages[-1]
        assert reopened.version_label.text() == "1/2" and reopened.text == "Paris."
        qtbot.waitUntil(lambda: reopened.version_bar.isVisibleTo(w), timeout=2000)
        # the next question's context has the selected version
        w.send("How many people live there?")
        wait_idle(qtbot, w)
        assert [m.content for m in model.prompts[-1][1:]] == [
            "Capital of France?",
            "Paris.",
            "How many people live there?",
        ]
    finally:
        close_window(w)


def test_arrows_are_off_while_the_answer_is_written(qtbot: Any) -> None:
    gate = threading.Event()
    inner = TakesTurns(["One.", "Two " * 50])
    w = _ready(qtbot, GatedModel(inner, gate))
    try:
        w.send("q?")
        gate.set()
        wait_idle(qtbot, w)
        gate.clear()
        qtbot.mouseClick(w.chat.view.messages[-1].regenerate_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.chat.view.messages[-1].version_label.text() == "2/2", timeout=5000)
        answer = w.chat.view.messages[-1]
        assert not answer.previous_version_button.isEnabled()
        gate.set()
        wait_idle(qtbot, w)
        assert answer.previous_version_button.isEnabled()
    finally:
        gate.set()
        close_window(w)


def test_coming_back_to_a_chat_whose_question_still_waits(qtbot: Any) -> None:
    gate = threading.Event()
    inner = TakesTurns(["first " * 100, "second answer"])
    w = _ready(qtbot, GatedModel(inner, gate))
    try:
        w.send("One")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        first = w.conversation_id
        w.new_chat()
        w.send("Two")
        second = w.conversation_id
        w.open_conversation(first)
        w.open_conversation(second)  # nothing of it is saved yet but the conversation itself
        assert [(m.role, m.text) for m in w.chat.view.messages] == [("user", "Two"), ("assistant", "")]
        waiting = w.chat.view.messages[-1]
        assert "waiting" in waiting.status.text() and w.chat.busy
        gate.set()
        qtbot.waitUntil(
            lambda: waiting.text == "second answer" and not waiting.body.is_streaming, timeout=5000
        )
        wait_idle(qtbot, w)
        assert [m.message_id for m in w.chat.view.messages] == [m.id for m in w.ctx.store.messages(second)]
    finally:
        gate.set()
        close_window(w)


def test_a_regenerate_that_waits_then_adds_its_version(qtbot: Any) -> None:
    gate = threading.Event()
    gate.set()
    inner = TakesTurns(["Old answer.", "long " * 100, "New answer."])
    w = _ready(qtbot, GatedModel(inner, gate))
    try:
        w.send("Question B")
        wait_idle(qtbot, w)
        b = w.conversation_id
        gate.clear()
        w.new_chat()
        w.send("Question A")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        a = w.conversation_id
        w.open_conversation(b)
        w.chat.view.update_actions(False)
        qtbot.mouseClick(w.chat.view.messages[-1].regenerate_button, Qt.MouseButton.LeftButton)
        assert "waiting" in w.chat.view.messages[-1].status.text()
        w.open_conversation(a)
        w.open_conversation(b)  # the old answer is not shown while its new version waits
        assert [m.text for m in w.chat.view.messages] == ["Question B", ""]
        gate.set()
        wait_idle(qtbot, w)
        answer = w.chat.view.messages[-1]
        assert answer.text == "New answer." and answer.version_label.text() == "2/2"
        assert [v.text for v in w.ctx.store.versions(answer.message_id)] == ["Old answer.", "New answer."]
        assert w.ctx.store.messages(a)[-1].text == "long " * 100
    finally:
        gate.set()
        close_window(w)


def test_quitting_while_a_new_chat_waits_leaves_no_empty_chat(qtbot: Any) -> None:
    gate = threading.Event()
    w = _ready(qtbot, GatedModel(ScriptedModel("going " * 50), gate))
    store = w.ctx.store
    try:
        w.send("One")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        first = w.conversation_id
        w.new_chat()
        w.send("Two")
        second = w.conversation_id
        assert {c.id for c in store.list_conversations()} == {first, second}
        w.close()  # stops both; "Two" never reached the model
        ids = {c.id for c in store.list_conversations()}
        assert ids == {first}
        assert store.messages(first)[-1].status == "stopped"
    finally:
        gate.set()
        store.close()


def _answer_box(w: Any, role: Any, seen: list[str]) -> None:
    """Press the button with ``role`` in the quit question once it is up (it is modal)."""
    from PySide6.QtWidgets import QMessageBox

    box = next((b for b in w.findChildren(QMessageBox, "quitWhileRunningBox") if b.isVisible()), None)
    if box is None:
        QTimer.singleShot(20, lambda: _answer_box(w, role, seen))
        return
    seen.append(box.informativeText())
    if role is None:
        box.reject()
        return
    next(b for b in box.buttons() if box.buttonRole(b) == role).click()


def test_quitting_while_an_answer_is_written_asks_first(qtbot: Any) -> None:
    from PySide6.QtWidgets import QMessageBox

    gate = threading.Event()
    w = _ready(qtbot, GatedModel(ScriptedModel("word " * 300), gate))
    try:
        w.show()
        w.send("Long one")
        qtbot.waitUntil(lambda: len(w.chat.view.messages[-1].text) > 5, timeout=5000)
        # File → Quit asks; Cancel keeps the window and the answer going
        seen: list[str] = []
        QTimer.singleShot(0, lambda: _answer_box(w, None, seen))
        w.quit_asking()
        assert len(seen) == 1 and "answer is still being written" in seen[0]
        assert w.isVisible() and not w._closing and w.chat.busy
        # Quit stops it; the answer so far is saved as stopped, not lost
        QTimer.singleShot(0, lambda: _answer_box(w, QMessageBox.ButtonRole.DestructiveRole, seen))
        w.quit_asking()
        assert len(seen) == 2 and not w.isVisible() and w._closing
        cid = w.conversation_id
        assert cid is not None
        saved = w.ctx.store.messages(cid)
        assert saved[0].text == "Long one" and saved[-1].text.startswith("word ")
    finally:
        gate.set()
        close_window(w)


def test_quitting_with_nothing_running_does_not_ask(qtbot: Any) -> None:
    w = _ready(qtbot, ScriptedModel("short"))
    try:
        w.show()
        w.send("Hi")
        wait_idle(qtbot, w)
        assert w.running_work() == []
        w.quit_asking()  # no box: a modal one would block here
        assert not w.isVisible() and w._closing
    finally:
        close_window(w)
