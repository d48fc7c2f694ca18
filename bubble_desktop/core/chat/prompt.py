"""Prompt assembly: system prompt, earlier turns, numbered sources, the question — within budget.

The sources go in the last user message, right before the question: small models (SmolLM2-135M)
use context far better when it sits next to the question than in a long system prompt. The
budget keeps system + history + sources + question inside the context window, leaving room for
``max_new_tokens``; the oldest turns go first (the engine's ``fit_messages``), then the
lowest-ranked sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.errors import GenerationError
from bubble_desktop.core.llm.base import ChatMessage, ChatModel
from bubble_desktop.core.llm.history import fit_messages
from bubble_desktop.core.settings import effective_system_prompt

CITATION = re.compile(r"\[(\d{1,3})\]")
MAX_SOURCE_CHARS = 1200

CITE_INSTRUCTION = (
    "Answer the question using the sources above. Cite the source you used by its number in "
    "square brackets, like [1]. If the sources do not contain the answer, say so."
)
SYSTEM_WITH_SOURCES = "Use the numbered sources in the user's message to answer, and cite them like [1]."
# the same for a question asked in Chinese: the model reads the instruction in the question's language
# (as Langchain-Chatchat's templates do), which keeps Qwen/GLM answering in Chinese
CITE_INSTRUCTION_ZH = (
    "请根据上面的资料回答问题，并用方括号标注所用资料的编号，例如 [1]。如果资料中没有答案，请如实说明。"
)
SYSTEM_WITH_SOURCES_ZH = "请使用用户消息中带编号的资料回答，并像 [1] 这样标注出处。"


@dataclass(frozen=True)
class PromptPlan:
    """The messages sent to the model and what made it in."""

    messages: tuple[ChatMessage, ...]
    sources: tuple[Source, ...]  # renumbered 1..n, in the order given to the model
    history_turns_used: int
    history_turns_dropped: int
    sources_dropped: int
    prompt_tokens: int | None  # None when the model's context window is unknown


def render_source(source: Source) -> str:
    """One source as the model sees it: ``[n] title (date)``, the text, and ``[n]`` again at its end.

    The trailing tag matters for small models: SmolLM2-135M tends to copy the sentence that answers
    the question, and with the tag right after it the copy carries its citation (measured: without
    the tag it never cited; with it, it wrote "... Korvenholm. [1]").
    """
    head = f"[{source.index}] {source.title or source.where}"
    if source.kind == "web" and source.date:
        head += f" ({source.date[:10]})"
    text = source.text.strip()
    if len(text) > MAX_SOURCE_CHARS:
        text = text[: MAX_SOURCE_CHARS - 1] + "…"
    return f"{head}\n{text} [{source.index}]"


def asked_in_chinese(question: str) -> bool:
    """Chinese characters make up at least a third of the question's letters."""
    han = sum(1 for ch in question if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in question if ch.isalpha())
    return han > 0 and 3 * han >= letters


def user_turn(question: str, sources: Sequence[Source]) -> str:
    """The final user message: sources first, then the question, then how to cite (in Chinese for
    a question asked in Chinese)."""
    if not sources:
        return question
    block = "\n\n".join(render_source(s) for s in sources)
    if asked_in_chinese(question):
        return f"资料：\n{block}\n\n问题：{question}\n{CITE_INSTRUCTION_ZH}"
    return f"Sources:\n{block}\n\nQuestion: {question}\n{CITE_INSTRUCTION}"


def system_text(system_prompt: str, with_sources: bool, question: str = "") -> str:
    system_prompt = effective_system_prompt(system_prompt).strip()
    if not with_sources:
        return system_prompt
    cite = SYSTEM_WITH_SOURCES_ZH if asked_in_chinese(question) else SYSTEM_WITH_SOURCES
    return f"{system_prompt} {cite}".strip()


def assemble(
    system_prompt: str,
    history: Sequence[ChatMessage],
    question: str,
    sources: Sequence[Source],
) -> list[ChatMessage]:
    """The message list for the model (no budgeting)."""
    renumbered = [s.renumbered(i) for i, s in enumerate(sources, start=1)]
    system = system_text(system_prompt, bool(renumbered), question)
    messages = [ChatMessage("system", system)] if system else []
    messages += [m for m in history if m.role in ("user", "assistant")]
    messages.append(ChatMessage("user", user_turn(question, renumbered)))
    return messages


def build_prompt(
    model: ChatModel,
    system_prompt: str,
    history: Sequence[ChatMessage],
    question: str,
    sources: Sequence[Source],
    max_new_tokens: int,
    context_window: int | None = None,
) -> PromptPlan:
    """Fit system + history + sources + question into the context window minus ``max_new_tokens``.

    The engine's ``fit_messages`` drops the oldest turns; when even no history is not enough, the
    lowest-ranked source goes and we try again, down to no sources at all.
    """
    window = context_window if context_window is not None else getattr(model.info, "context_window", 0)
    turns = [m for m in history if m.role in ("user", "assistant")]
    ranked = list(sources)
    if not window or window <= 0:
        messages = assemble(system_prompt, turns, question, ranked)
        return PromptPlan(tuple(messages), _numbered(ranked), _count_turns(turns), 0, 0, None)
    keep = len(ranked)
    while True:
        kept = _numbered(ranked[:keep])
        try:
            fitted = fit_messages(
                model,
                system_text(system_prompt, bool(kept), question),
                turns,
                user_turn(question, kept),
                max(1, max_new_tokens),
                context_window=window,
            )
        except GenerationError:
            if keep == 0:
                raise
            keep -= 1
            continue
        used = [m for m in fitted.messages[:-1] if m.role != "system"]
        used_turns = _count_turns(used)
        return PromptPlan(
            messages=fitted.messages,
            sources=kept,
            history_turns_used=used_turns,
            history_turns_dropped=_count_turns(turns) - used_turns,
            sources_dropped=len(ranked) - keep,
            prompt_tokens=fitted.prompt_tokens,
        )


def _count_turns(messages: Sequence[ChatMessage]) -> int:
    return sum(1 for m in messages if m.role == "user")


def _numbered(sources: Sequence[Source]) -> tuple[Source, ...]:
    return tuple(s.renumbered(i) for i, s in enumerate(sources, start=1))


def cited_numbers(text: str) -> set[int]:
    """The source numbers an answer cites, e.g. {1, 3} for "... [1] ... [3]"."""
    return {int(m.group(1)) for m in CITATION.finditer(text)}
