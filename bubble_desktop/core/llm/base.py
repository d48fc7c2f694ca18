"""The small shapes every chat model speaks.

A model is "give me an iterator of text": ``model.stream(messages, sampling, cancel)`` returns a
:class:`Generation`; iterate it for text chunks as they are produced; when the iteration ends,
``generation.stats`` holds token counts, time to first token, speed and the finish reason.
Cross-thread payloads are immutable (frozen dataclasses, str, tuples).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from bubble_desktop.core.settings import SamplingSettings

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled", "error"]
# progress(fraction 0..1, what is happening) — called from the loading thread
ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # send -> first text chunk
    tokens_per_s: float | None = None  # completion tokens / decode time
    total_s: float = 0.0
    finish_reason: FinishReason = "stop"
    error: str | None = None  # user-facing message when finish_reason == "error"

    def to_dict(self) -> dict[str, object]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_s": self.ttft_s,
            "tokens_per_s": self.tokens_per_s,
            "total_s": self.total_s,
            "finish_reason": self.finish_reason,
            "error": self.error,
        }


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    arch: str  # e.g. "llama", "chatglm3", "t5", "openai"
    device: str  # what it actually runs on: "cpu", "cuda:0", "mps", "remote"
    dtype: str
    context_window: int
    # sampling fields this model does not honour (shown in the UI), e.g. ("top_k", "seed")
    ignored_settings: tuple[str, ...] = ()
    remote_code: bool = False
    lora: str | None = None
    # what the status bar names, when the backend knows better than ``device``: "CPU · 4 threads"
    runs_on: str = ""
    # what the user should know about how it runs, shown once it is loaded (status bar, CLI note);
    # texts marked N_ in core and localized where shown
    notices: tuple[str, ...] = ()


class Generation:
    """An iterator of text chunks; ``stats`` is set once iteration has finished (or stopped)."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self.stats: GenerationStats | None = None
        self.text_parts: list[str] = []

    def __iter__(self) -> Iterator[str]:
        try:
            for chunk in self._chunks:
                self.text_parts.append(chunk)
                yield chunk
        finally:
            # a consumer that stops early must not leave the producer (e.g. a generate thread) running
            self.close()

    def close(self) -> None:
        """Stop producing and release what the producer holds (idempotent)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def run(self) -> str:
        """Consume the whole generation; return the text."""
        for _ in self:
            pass
        return self.text


@runtime_checkable
class ChatModel(Protocol):
    info: ModelInfo

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation: ...

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens the prompt for ``messages`` takes (chat template applied, generation prompt added)."""
        ...

    def unload(self) -> None:
        """Free the weights (and GPU memory)."""
        ...


@dataclass
class LoadRequest:
    """What to load; built from ModelSettings plus the user's remote-code consent."""

    path: str
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "none"
    lora_path: str = ""
    context_window: int = 0
    trust_remote_code: bool = False
    extra: dict[str, object] = field(default_factory=dict)
