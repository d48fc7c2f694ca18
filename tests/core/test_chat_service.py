"""ChatService: retrieval (knowledge + web, in parallel) -> numbered sources -> streamed, saved answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.chat.service import ChatService
from bubble_desktop.core.chat.store import ConversationStore
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from bubble_desktop.core.web.search import DdgsSearcher, SearchRequest
from tests.core.test_chat_doubles import ListRetriever, WordModel, hit
from tests.core.test_web_search import RecordedProvider

FACT = "The Zorblat festival is held every May on Quennet island."


@pytest.fixture
def store(tmp_path: Path):
    with ConversationStore(tmp_path / "chats.sqlite3") as s:
        yield s


@pytest.fixture
def knowledge() -> ListRetriever:
    return ListRetriever(
        [
            hit(FACT, "/docs/zorblat.md", position="line 2"),
            hit("Ferries leave from the north pier.", "/docs/ferry.md"),
            hit("Unrelated text in another base.", "/docs/other.md", kb="other"),
        ]
    )


def _settings(**sampling: Any) -> Settings:
    s = Settings()
    s.sampling = s.sampling.model_copy(update={"temperature": 0.0, **sampling})
    return s


def test_ask_with_kb_streams_cites_and_saves(store: ConversationStore, knowledge: ListRetriever) -> None:
    model = WordModel("It is held in May [1].")
    svc = ChatService(Paths.default(), knowledge, None, store)
    answer = svc.ask(model, "When is the Zorblat festival held?", _settings(), kb_names=["notes"])
    # known before the first chunk
    assert answer.sources[0].index == 1 and answer.sources[0].path == "/docs/zorblat.md"
    assert answer.sources[0].kind == "kb" and answer.sources[0].position == "line 2"
    assert all(s.kb == "notes" for s in answer.sources)
    assert answer.notices == () and not answer.web_used
    assert store.get_message(answer.message_id).status == "streaming"
    chunks = list(answer)
    assert "".join(chunks) == "It is held in May [1]." == answer.text
    assert answer.status == "complete" and answer.stats and answer.stats.completion_tokens == 6
    prompt = model.prompts[0][-1].content
    assert prompt.startswith("Sources:\n[1] zorblat.md\n" + FACT)
    assert prompt.index(FACT) < prompt.index("Question: When is the Zorblat festival held?")
    conv = store.get_conversation(answer.conversation_id)
    assert conv.title == "When is the Zorblat festival held?" and conv.kb_names == ("notes",)
    user, saved = store.messages(answer.conversation_id)
    assert user.text == "When is the Zorblat festival held?"
    assert saved.text == answer.text and saved.status == "complete"
    assert saved.sources == answer.sources and saved.sampling and saved.sampling["temperature"] == 0.0
    assert saved.stats and saved.stats["finish_reason"] == "stop"
    assert set(answer.timings) >= {"retrieval_s", "web_s", "assembly_s", "send_to_model_s"}


def test_kb_and_web_run_in_parallel(store: ConversationStore, knowledge: ListRetriever) -> None:
    both_running = threading.Barrier(2, timeout=5)

    class SlowKnowledge(ListRetriever):
        def search(self, *args: Any, **kwargs: Any) -> Any:
            both_running.wait()  # only passes when the web search runs at the same time
            return super().search(*args, **kwargs)

    class SlowProvider(RecordedProvider):
        def search(self, request: SearchRequest) -> list[dict[str, Any]]:
            both_running.wait()
            return super().search(request)

    caller = threading.current_thread()
    svc = ChatService(Paths.default(), SlowKnowledge(knowledge.hits), DdgsSearcher(SlowProvider()), store)
    answer = svc.ask(WordModel(), "Zorblat festival?", _settings(), kb_names=["notes"], web=True)
    assert [s.kind for s in answer.sources] == ["kb", "kb", "web", "web", "web"]
    assert [s.index for s in answer.sources] == [1, 2, 3, 4, 5]
    assert answer.web_used and answer.notices == ()
    assert answer.sources[2].url == "https://www.example-news.test/zorblat-festival-record"
    assert threading.current_thread() is caller
    answer.run()
    assert store.get_message(answer.message_id).web_used


def test_web_past_its_deadline_becomes_a_notice_and_the_answer_proceeds(store: ConversationStore) -> None:
    release = threading.Event()

    class Stuck:
        def search(self, request: SearchRequest) -> list[dict[str, Any]]:
            release.wait(timeout=30)
            return []

    settings = _settings()
    settings.web = settings.web.model_copy(update={"deadline_s": 1.0})
    svc = ChatService(Paths.default(), None, DdgsSearcher(Stuck()), store)
    started = time.monotonic()
    answer = svc.ask(WordModel("Without the web."), "News about Zorblat?", settings, web=True)
    try:
        assert time.monotonic() - started < 3
        assert answer.sources == () and answer.web_used
        assert len(answer.notices) == 1 and "within 1 s" in answer.notices[0]
        assert answer.run() == "Without the web."
        assert answer.status == "complete"
    finally:
        release.set()


def test_web_failure_through_the_real_library(store: ConversationStore) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = _settings()
    settings.web = settings.web.model_copy(update={"proxy": f"http://127.0.0.1:{port}", "deadline_s": 5})
    svc = ChatService(Paths.default(), None, DdgsSearcher(), store)
    answer = svc.ask(WordModel("ok"), "news?", settings, web=True)
    assert answer.notices and "without the web" in answer.notices[0]
    assert answer.run() == "ok"


def test_missing_knowledge_service_is_a_notice(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    answer = svc.ask(WordModel("x"), "q?", _settings(), kb_names=["notes"])
    assert answer.notices and "not available" in answer.notices[0]
    answer.run()


def test_stop_mid_answer_keeps_partial_text(store: ConversationStore, knowledge: ListRetriever) -> None:
    gate = threading.Event()
    cancel = threading.Event()
    svc = ChatService(Paths.default(), knowledge, None, store)
    answer = svc.ask(
        WordModel("one two three four", gate=gate), "q", _settings(), kb_names=["notes"], cancel=cancel
    )
    it = iter(answer)
    assert next(it) == "one"
    cancel.set()
    gate.set()
    assert list(it) == []
    assert answer.status == "stopped"
    saved = store.get_message(answer.message_id)
    assert (saved.status, saved.text) == ("stopped", "one")
    assert saved.sources == answer.sources


def test_partial_text_is_saved_while_streaming(store: ConversationStore) -> None:
    """Every ``checkpoint_s`` the text so far is written, still marked streaming (a crash keeps it)."""
    svc = ChatService(Paths.default(), None, None, store)
    answer = svc.ask(WordModel("one two three four"), "q", _settings())
    answer.checkpoint_s = 0.0  # every chunk
    seen = []
    for _chunk in answer:
        saved = store.get_message(answer.message_id)
        seen.append((saved.status, saved.text))
    # a checkpoint is written after each chunk arrives, before the consumer sees it
    assert seen == [
        ("streaming", "one"),
        ("streaming", "one two"),
        ("streaming", "one two three"),
        ("streaming", "one two three four"),
    ]
    assert store.get_message(answer.message_id).status == "complete"


def test_consumer_breaking_off_saves_stopped(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    answer2 = svc.ask(WordModel("a b c d"), "q2", _settings())
    gen = iter(answer2)
    next(gen)
    gen.close()  # type: ignore[attr-defined]
    saved = store.get_message(answer2.message_id)
    assert (saved.status, saved.text) == ("stopped", "a")


def test_generation_error_keeps_partial_text(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    answer = svc.ask(WordModel("a b c d", fail_after=2), "q", _settings())
    with pytest.raises(RuntimeError):
        answer.run()
    saved = store.get_message(answer.message_id)
    assert (saved.status, saved.text) == ("error", "a b")
    assert saved.stats and saved.stats["error"]


def test_follow_up_sees_history_and_regenerate_replaces_the_answer(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    first = svc.ask(WordModel("Paris."), "Capital of France?", _settings())
    first.run()
    model = WordModel("About two million.")
    follow = svc.ask(model, "How many people live there?", _settings(), conversation_id=first.conversation_id)
    follow.run()
    assert [m.content for m in model.prompts[0][1:]] == [
        "Capital of France?",
        "Paris.",
        "How many people live there?",
    ]

    again_model = WordModel("Roughly 2.1 million.")
    again = svc.regenerate(again_model, first.conversation_id, _settings())
    again.run()
    texts = [m.text for m in store.messages(first.conversation_id)]
    assert texts == ["Capital of France?", "Paris.", "How many people live there?", "Roughly 2.1 million."]
    assert [m.content for m in again_model.prompts[0][1:]] == [
        "Capital of France?",
        "Paris.",
        "How many people live there?",
    ]


def test_edit_and_resend_replaces_what_followed(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    first = svc.ask(WordModel("Paris."), "Capital of France?", _settings())
    first.run()
    svc.ask(
        WordModel("Two million."), "Population?", _settings(), conversation_id=first.conversation_id
    ).run()
    model = WordModel("Berlin.")
    edited = svc.edit_and_resend(model, first.user_message_id, "Capital of Germany?", _settings())
    edited.run()
    assert [m.text for m in store.messages(first.conversation_id)] == ["Capital of Germany?", "Berlin."]
    assert [m.content for m in model.prompts[0][1:]] == ["Capital of Germany?"]
    assert store.get_conversation(first.conversation_id).title == "Capital of Germany?"


def test_failed_answers_are_left_out_of_history(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    bad = svc.ask(WordModel("x y z", fail_after=1), "First?", _settings())
    with pytest.raises(RuntimeError):
        bad.run()
    model = WordModel("ok")
    svc.ask(model, "Second?", _settings(), conversation_id=bad.conversation_id).run()
    assert [m.content for m in model.prompts[0][1:]] == ["First?", "Second?"]


def test_cancel_before_generation_saves_stopped(store: ConversationStore) -> None:
    cancel = threading.Event()
    cancel.set()
    model = WordModel("never")
    answer = ChatService(Paths.default(), None, None, store).ask(model, "q", _settings(), cancel=cancel)
    assert answer.run() == "" and answer.status == "stopped" and model.prompts == []


def test_real_tiny_model_budget_drops_sources(store: ConversationStore, tiny_model_dir: Path) -> None:
    """With the real tokenizer and a small window, low-ranked sources go and the prompt fits."""
    from bubble_desktop.core.llm.base import LoadRequest
    from bubble_desktop.core.llm.loader import load_model

    model = load_model(LoadRequest(path=str(tiny_model_dir), device="cpu", context_window=400))
    try:
        hits = [
            hit(f"Source number {i}: " + "Bubble is a private chatbot. " * 6, f"/d/{i}.md", score=1 - i / 10)
            for i in range(6)
        ]
        svc = ChatService(Paths.default(), ListRetriever(hits), None, store)
        settings = _settings(max_new_tokens=16)
        settings.knowledge = settings.knowledge.model_copy(update={"top_k": 6})
        answer = svc.ask(model, "What is Bubble?", settings, kb_names=["notes"])
        assert answer.prompt is not None and answer.prompt.prompt_tokens is not None
        assert answer.prompt.prompt_tokens + 16 <= model.info.context_window
        assert 0 < len(answer.sources) < 6 and answer.prompt.sources_dropped == 6 - len(answer.sources)
        assert [s.path for s in answer.sources] == [f"/d/{i}.md" for i in range(len(answer.sources))]
        assert any("did not fit" in n for n in answer.notices)
        answer.run()
        assert answer.status == "complete"
        assert store.get_message(answer.message_id).stats["prompt_tokens"] == answer.prompt.prompt_tokens
    finally:
        model.unload()
