"""Test doubles for the chat tests: a word-level ChatModel and an in-memory knowledge retriever."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bubble_desktop.core.kb.types import Hit
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo
from bubble_desktop.core.settings import SamplingSettings


class WordModel:
    """Tokens are whitespace-separated words (+3 per message); replies with a scripted text, word by word."""

    def __init__(
        self,
        reply: str = "The answer is 42 [1].",
        context_window: int = 2048,
        fail_after: int | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.info = ModelInfo("words", "/dev/null", "test", "cpu", "float32", context_window)
        self.reply = reply
        self.fail_after = fail_after
        self.gate = gate  # when set, each chunk after the first waits for it (lets a test stop mid-answer)
        self.prompts: list[list[ChatMessage]] = []

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 3 for m in messages) + 1

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        self.prompts.append(list(messages))
        cancel = cancel or threading.Event()
        words = self.reply.split(" ")
        prompt_tokens = self.count_tokens(messages)
        holder: list[Generation] = []

        def produce() -> Iterator[str]:
            started = time.perf_counter()
            n = 0
            reason = "stop"
            for i, word in enumerate(words):
                if i and self.gate is not None:
                    self.gate.wait(timeout=10)
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if self.fail_after is not None and i >= self.fail_after:
                    holder[0].stats = GenerationStats(prompt_tokens, n, None, None, 0.0, "error", "boom")
                    raise RuntimeError("boom")
                n += 1
                yield word if i == 0 else " " + word
            holder[0].stats = GenerationStats(
                prompt_tokens, n, 0.001, 1000.0, time.perf_counter() - started, reason
            )

        gen = Generation(produce())
        holder.append(gen)
        return gen

    def unload(self) -> None:
        pass


@dataclass
class ListRetriever:
    """Knowledge retrieval over a fixed list of hits: keyword overlap as the score."""

    hits: list[Hit]
    calls: int = 0

    def search(
        self,
        kb_names: Sequence[str],
        query: str,
        top_k: int | None = 4,
        score_threshold: float | None = None,
        hybrid: bool | None = None,
    ) -> list[Hit]:
        self.calls += 1
        words = {w.lower().strip("?.,") for w in query.split()}
        scored = []
        for h in self.hits:
            if h.kb not in kb_names:
                continue
            overlap = len(words & {w.lower().strip("?.,") for w in h.text.split()})
            scored.append(
                Hit(overlap / max(1, len(words)), h.path, h.text, h.position, h.kb, h.doc_id, h.title)
            )
        scored.sort(key=lambda h: h.score, reverse=True)
        return scored[: top_k or 4]


def hit(
    text: str, path: str = "/docs/a.md", kb: str = "notes", position: str = "line 1", score: float = 0.5
) -> Hit:
    return Hit(score, path, text, position, kb, path, None)
