"""Issue 16.6: a question the knowledge base cannot answer gets no sources (real MiniLM, real Qdrant Edge).

The corpus and questions are those of tests/bench/relevance.py (which calibrated the default).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bubble_desktop.core.chat.prompt import user_turn
from bubble_desktop.core.chat.service import ChatService
from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder
from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings, Settings
from tests.fixtures.relevance_corpus import QUESTIONS, write_corpus


@pytest.fixture(scope="module", params=["edge", "milvus-lite"])
def kb(
    minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[KnowledgeService]:
    """The same rule over both embedded vector databases (Milvus hits carry their vectors and our
    tokenizer's terms, as Qdrant's do)."""
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite")
    home = tmp_path_factory.mktemp("relevance-home")
    svc = KnowledgeService(
        Paths.under(home).ensure(),
        KnowledgeSettings(vector_store=request.param),
        embedder=SentenceTransformerEmbedder(str(minilm_dir)),
    )
    svc.create_base("kb")
    assert svc.add_paths("kb", [write_corpus(home / "docs")]).ok
    yield svc
    svc.close()


@pytest.mark.parametrize(
    "request_text",
    ["Write me an essay about autumn.", "Tell me a joke.", "写一首关于春天的诗", "给我讲个笑话"],
)
def test_off_topic_requests_get_no_sources(kb: KnowledgeService, request_text: str) -> None:
    assert kb.search("kb", request_text, min_relevance=0.0), "threshold 0 still lists the best chunks"
    assert kb.search("kb", request_text) == []


@pytest.mark.parametrize(
    "question",
    ["Why are leaves green?", "What is a Kubernetes pod?", "大熊猫吃什么？", "绿茶可以空腹喝吗？"],
)
def test_answerable_questions_keep_their_source(kb: KnowledgeService, question: str) -> None:
    hits = kb.search("kb", question)
    assert hits and Path(hits[0].path).name == QUESTIONS[question]
    assert all(h.relevance is not None and h.relevance >= kb.settings.min_relevance for h in hits)
    assert hits[0].similarity is not None and hits[0].keyword is not None
    assert all(Path(h.path).name == QUESTIONS[question] for h in hits), "unrelated documents left out"


def test_chat_retrieval_injects_nothing_when_nothing_is_relevant(
    kb: KnowledgeService, tmp_path: Path
) -> None:
    chat = ChatService(Paths.under(tmp_path / "chat").ensure(), knowledge=kb)
    try:
        settings = Settings()
        off = chat.retrieve("Write me an essay about autumn.", settings, kb_names=["kb"])
        assert off.sources == () and off.notices == ()
        # and the prompt is the bare question: no "Sources:" block, no citing instruction
        assert user_turn("Write me an essay about autumn.", off.sources) == "Write me an essay about autumn."
        on = chat.retrieve("How much salt goes into the sourdough?", settings, kb_names=["kb"])
        assert [Path(s.path).name for s in on.sources] == ["sourdough.md"]
    finally:
        chat.close()


def test_minimum_relevance_is_a_setting(kb: KnowledgeService) -> None:
    before = kb.settings
    try:
        kb.update_settings(before.model_copy(update={"min_relevance": 0.0}))
        assert len(kb.search("kb", "Write me an essay about autumn.")) == before.top_k
    finally:
        kb.update_settings(before)


def test_a_rare_word_searched_alone_is_kept(kb: KnowledgeService) -> None:
    """A name or code on its own has a low similarity to the sentence it is in: the keyword keeps it."""
    hits = kb.search("kb", "patsub_replacement")
    assert hits and Path(hits[0].path).name == "bash_news.txt"
    assert hits[0].keyword == 1.0
