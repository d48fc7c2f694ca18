"""Prompt assembly: numbered sources right before the question, and the token budget."""

from __future__ import annotations

import pytest

from bubble_desktop.core.chat.prompt import (
    asked_in_chinese,
    assemble,
    build_prompt,
    cited_numbers,
    render_source,
    user_turn,
)
from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.errors import GenerationError
from bubble_desktop.core.llm.base import ChatMessage
from tests.core.test_chat_doubles import WordModel


def _sources(n: int, words: int = 20) -> list[Source]:
    return [
        Source(
            0,
            "kb",
            f"doc{i}.md",
            " ".join([f"w{i}"] * words),
            path=f"/d/doc{i}.md",
            position="line 1",
            score=1 - i / 10,
        )
        for i in range(n)
    ]


def _history(turns: int, words: int = 30) -> list[ChatMessage]:
    out = []
    for t in range(turns):
        out += [
            ChatMessage("user", f"q{t} " + "x " * words),
            ChatMessage("assistant", f"a{t} " + "y " * words),
        ]
    return out


def test_sources_sit_right_before_the_question_numbered_from_one() -> None:
    msgs = assemble("Be brief.", [], "When is it?", _sources(2))
    assert msgs[0].role == "system" and "[1]" in msgs[0].content
    last = msgs[-1].content
    assert last.startswith("Sources:\n[1] doc0.md\n")
    assert last.index("[2] doc1.md") < last.index("Question: When is it?") < last.index("like [1]")
    assert assemble("Be brief.", [], "Hi", [])[-1].content == "Hi"


def test_web_source_shows_its_date() -> None:
    web = Source(3, "web", "Festival news", "Crowds.", url="https://n.test", date="2026-11-20T08:15:00")
    assert render_source(web) == "[3] Festival news (2026-11-20)\nCrowds. [3]"


def test_everything_fits_when_there_is_room() -> None:
    model = WordModel(context_window=4096)
    plan = build_prompt(model, "sys", _history(3), "question?", _sources(4), max_new_tokens=256)
    assert (plan.history_turns_used, plan.history_turns_dropped, plan.sources_dropped) == (3, 0, 0)
    assert [s.index for s in plan.sources] == [1, 2, 3, 4]
    assert plan.prompt_tokens == model.count_tokens(plan.messages)


def test_oldest_turns_go_first_then_lowest_ranked_sources() -> None:
    model = WordModel()
    history, sources = _history(4), _sources(4)
    full = model.count_tokens(assemble("sys", history, "question?", sources))
    # room for everything but about two turns
    plan = build_prompt(
        model, "sys", history, "question?", sources, max_new_tokens=100, context_window=full + 100 - 70
    )
    assert plan.sources_dropped == 0 and plan.history_turns_dropped == 2
    assert plan.messages[1].content.startswith("q2")  # the two newest turns survive
    assert plan.prompt_tokens <= full - 70
    # no history can stay and one source must go: the lowest-ranked (doc3)
    no_history = model.count_tokens(assemble("sys", [], "question?", sources))
    plan = build_prompt(
        model, "sys", history, "question?", sources, max_new_tokens=100, context_window=no_history + 100 - 5
    )
    assert plan.history_turns_used == 0 and plan.sources_dropped == 1
    assert [s.title for s in plan.sources] == ["doc0.md", "doc1.md", "doc2.md"]
    assert plan.prompt_tokens is not None and plan.prompt_tokens <= no_history - 5


def test_question_alone_too_long_is_a_user_facing_error() -> None:
    with pytest.raises(GenerationError) as info:
        build_prompt(
            WordModel(), "sys", [], "word " * 500, _sources(2), max_new_tokens=100, context_window=300
        )
    assert info.value.hint


def test_unknown_context_window_keeps_everything() -> None:
    plan = build_prompt(WordModel(context_window=0), "sys", _history(2), "q", _sources(2), max_new_tokens=100)
    assert plan.prompt_tokens is None and len(plan.sources) == 2 and plan.history_turns_used == 2


def test_user_turn_and_citations() -> None:
    assert "Question: q" in user_turn("q", _sources(1))
    assert cited_numbers("See [1] and [3], not [x].") == {1, 3}


def test_a_question_asked_in_chinese_gets_the_instruction_in_chinese() -> None:
    msgs = assemble("你是一个乐于助人的助手。", [], "青山果园的门票多少钱？", _sources(2))
    last = msgs[-1].content
    assert last.startswith("资料：\n[1] doc0.md\n")
    assert last.index("[2] doc1.md") < last.index("问题：青山果园的门票多少钱？") < last.index("例如 [1]")
    assert "Sources:" not in last and "Question:" not in last
    assert msgs[0].content.endswith("并像 [1] 这样标注出处。")
    english = assemble("Be brief.", [], "What does 青山 mean in the orchard's name?", _sources(1))
    assert english[-1].content.startswith("Sources:") and "cite them like [1]" in english[0].content


@pytest.mark.parametrize(
    "question, chinese",
    [
        ("青山果园的门票多少钱？", True),
        ("GGUF 模型怎么加载？", True),  # product names in Latin letters, the question in Chinese
        ("What is 青山?", False),
        ("When is the festival?", False),
        ("2024?", False),
    ],
)
def test_which_questions_count_as_chinese(question: str, chinese: bool) -> None:
    assert asked_in_chinese(question) is chinese
