"""Fit a conversation into the model's context window.

The system prompt and the newest question always stay; older turns are dropped oldest first (a
user question together with its answer) until the prompt plus the room reserved for the answer
fits. Token counts come from the model itself (chat template included), so the budget is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bubble_desktop.core.errors import GenerationError
from bubble_desktop.core.llm.base import ChatMessage, ChatModel

TokenCounter = Callable[[Sequence[ChatMessage]], int]


@dataclass(frozen=True)
class FittedPrompt:
    messages: tuple[ChatMessage, ...]
    prompt_tokens: int
    dropped_turns: int  # how many earlier messages did not fit


def token_counter(model: ChatModel) -> TokenCounter:
    """Counts prompt tokens of a message list with the model's own tokenizer and template."""
    return model.count_tokens


def _turns(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """Group history into turns: a user message with the assistant replies that follow it."""
    turns: list[list[ChatMessage]] = []
    for m in history:
        if m.role == "system":
            continue
        if m.role == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


def fit_messages(
    model: ChatModel | None,
    system: str,
    history: Sequence[ChatMessage],
    question: str,
    reserve_tokens: int,
    *,
    context_window: int | None = None,
    count: TokenCounter | None = None,
) -> FittedPrompt:
    """[system] + as much recent history as fits + the question, leaving ``reserve_tokens`` free.

    ``reserve_tokens`` is the room kept for the answer (usually max_new_tokens). Raises
    GenerationError when even the system prompt and the question alone do not fit.
    """
    if count is None:
        if model is None:
            raise ValueError("fit_messages needs a model or a token counter")
        count = model.count_tokens
    window = context_window if context_window is not None else (model.info.context_window if model else 0)
    budget = window - max(0, reserve_tokens)
    head = [ChatMessage("system", system)] if system else []
    tail = [ChatMessage("user", question)]
    base_tokens = count(head + tail)
    if base_tokens > budget:
        raise GenerationError(
            f"The question and system prompt take {base_tokens} "
            f"tokens; with {reserve_tokens} reserved for the "
            f"answer they do not fit the model's context window of {window} tokens.",
            "Shorten the question or the system prompt, use fewer sources, or lower max new tokens.",
        )
    turns = _turns(history)
    # binary search on how many of the newest turns fit: counting is the costly part
    lo, hi = 0, len(turns)
    best_tokens = base_tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        kept = [m for t in turns[len(turns) - mid :] for m in t]
        n = count(head + kept + tail)
        if n <= budget:
            lo, best_tokens = mid, n
        else:
            hi = mid - 1
    kept = [m for t in turns[len(turns) - lo :] for m in t] if lo else []
    dropped = sum(len(t) for t in turns[: len(turns) - lo])
    return FittedPrompt(tuple(head + kept + tail), best_tokens, dropped)


def fit_text(text: str, max_tokens: int, count_text: Callable[[str], int]) -> str:
    """Cut ``text`` to at most ``max_tokens`` tokens (by characters, then checked): for budgeting sources."""
    if max_tokens <= 0:
        return ""
    if count_text(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_text(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]
