"""Fitting a conversation into the context window: oldest turns go first, system and question stay."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubble_desktop.core.errors import GenerationError
from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.history import fit_messages, fit_text, token_counter
from bubble_desktop.core.llm.loader import load_model


def words(messages: Sequence[ChatMessage]) -> int:
    """A stand-in counter: one token per word plus 3 per message (like a template's markers)."""
    return sum(len(m.content.split()) + 3 for m in messages)


def convo(n_turns: int) -> list[ChatMessage]:
    out = []
    for i in range(n_turns):
        out += [
            ChatMessage("user", f"question {i} " + "x " * 5),
            ChatMessage("assistant", f"answer {i} " + "y " * 5),
        ]
    return out


def test_everything_fits() -> None:
    fitted = fit_messages(None, "sys", convo(3), "now?", 10, context_window=1000, count=words)
    assert [m.role for m in fitted.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert fitted.dropped_turns == 0 and fitted.prompt_tokens == words(fitted.messages)


def test_oldest_turns_are_dropped_first() -> None:
    history = convo(5)
    # system 4 + question 4 + each turn 2*(7+3)=20 -> budget for 2 turns = 48
    fitted = fit_messages(None, "sys", history, "now?", 12, context_window=60, count=words)
    assert fitted.messages[0] == ChatMessage("system", "sys")
    assert fitted.messages[-1] == ChatMessage("user", "now?")
    assert list(fitted.messages[1:-1]) == history[-4:]
    assert fitted.dropped_turns == 6
    assert fitted.prompt_tokens <= 60 - 12


def test_no_system_prompt() -> None:
    fitted = fit_messages(None, "", convo(1), "q", 0, context_window=100, count=words)
    assert fitted.messages[0].role == "user"


def test_question_that_cannot_fit_is_a_user_error() -> None:
    with pytest.raises(GenerationError) as err:
        fit_messages(None, "sys", [], "w " * 100, 10, context_window=50, count=words)
    assert err.value.hint


@settings(max_examples=50, deadline=None)
@given(n_turns=st.integers(0, 8), window=st.integers(10, 200), reserve=st.integers(0, 40))
def test_result_always_fits_and_keeps_a_suffix(n_turns: int, window: int, reserve: int) -> None:
    history = convo(n_turns)
    try:
        fitted = fit_messages(None, "sys", history, "q?", reserve, context_window=window, count=words)
    except GenerationError:
        assert words([ChatMessage("system", "sys"), ChatMessage("user", "q?")]) > window - reserve
        return
    assert words(fitted.messages) <= window - reserve
    kept = list(fitted.messages[1:-1])
    assert kept == (history[len(history) - len(kept) :] if kept else [])
    assert len(kept) % 2 == 0  # whole turns only
    # one more turn would not have fitted
    if len(kept) < len(history):
        bigger = [fitted.messages[0]] + history[len(history) - len(kept) - 2 :] + [fitted.messages[-1]]
        assert words(bigger) > window - reserve


def test_with_the_real_tokenizer(tiny_model_dir: Path) -> None:
    model = load_model(LoadRequest(str(tiny_model_dir), context_window=120))
    try:
        history = convo(10)
        fitted = fit_messages(model, "Be brief.", history, "What is the capital of France?", 30)
        count = token_counter(model)
        assert fitted.prompt_tokens == count(fitted.messages) <= 120 - 30
        assert 0 < fitted.dropped_turns < len(history)
    finally:
        model.unload()


def test_fit_text_cuts_to_budget() -> None:
    def count(text: str) -> int:
        return len(text.split())

    text = "one two three four five six"
    assert fit_text(text, 10, count) == text
    cut = fit_text(text, 3, count)
    assert count(cut) <= 3 and text.startswith(cut)
    assert fit_text(text, 0, count) == ""
