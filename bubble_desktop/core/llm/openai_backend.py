"""A ChatModel that streams from an OpenAI-compatible server (vLLM, llama.cpp server, TGI, …).

For users who outgrow one machine: generation runs on their GPU box, Bubble stays the same. Only
the standard library is used (urllib + server-sent events). The stop event is checked between
streamed chunks; closing the response ends the request on the server side.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from bubble_desktop.core.errors import ModelError
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo
from bubble_desktop.core.settings import SamplingSettings

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 8192


class OpenAIChatModel:
    """Streams chat completions from ``base_url`` (e.g. http://gpu-box:8000/v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        context_window: int = 0,
        timeout_s: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ModelError(f"{base_url!r} is not an http(s) URL.", "Use e.g. http://gpu-box:8000/v1.")
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.info = ModelInfo(
            name=model or "server model",
            path=self.base_url,
            arch="openai",
            device="remote",
            dtype="remote",
            context_window=context_window or DEFAULT_CONTEXT_WINDOW,
        )

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """An estimate (no tokenizer here): about 4 characters per token, plus a few per message."""
        return sum(len(m.content) // 4 + 4 for m in messages) + 2

    def _request(self, messages: Sequence[ChatMessage], sampling: SamplingSettings) -> urllib.request.Request:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": 1.0 if sampling.greedy else sampling.top_p,
        }
        if sampling.top_k > 0 and not sampling.greedy:
            body["top_k"] = sampling.top_k  # vLLM / llama.cpp extension
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty  # vLLM / llama.cpp extension
        if sampling.seed >= 0:
            body["seed"] = sampling.seed
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        gen = Generation(iter(()))
        gen._chunks = self._produce(gen, messages, sampling, cancel or threading.Event())
        return gen

    def _produce(
        self,
        gen: Generation,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event,
    ) -> Iterator[str]:
        t0 = time.perf_counter()
        ttft: float | None = None
        t_first = t_last = None
        chunks = 0
        usage: dict[str, Any] = {}
        finish = "stop"
        error: str | None = None
        response = None
        try:
            response = urllib.request.urlopen(self._request(messages, sampling), timeout=self.timeout_s)
            for raw in response:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason") == "length":
                        finish = "length"
                    if piece:
                        now = time.perf_counter()
                        chunks += 1
                        t_first = t_first or now
                        t_last = now
                        if ttft is None:
                            ttft = now - t0
                        yield piece
                        if cancel.is_set():
                            finish = "cancelled"
                            break
                if finish == "cancelled":
                    break
        except GeneratorExit:
            finish = "cancelled"
            raise
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300] if exc.fp else ""
            finish, error = "error", f"The server answered HTTP {exc.code}: {detail or exc.reason}"
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            finish, error = "error", f"Could not reach the model server at {self.base_url}: {reason}"
        except ValueError as exc:
            finish, error = "error", f"The model server sent something that is not an OpenAI stream: {exc}"
        finally:
            if response is not None:
                response.close()
            n = int(usage.get("completion_tokens") or chunks)
            decode_s = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
            gen.stats = GenerationStats(
                prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(messages)),
                completion_tokens=n,
                ttft_s=ttft,
                tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else None,
                total_s=time.perf_counter() - t0,
                finish_reason=finish,  # type: ignore[arg-type]
                error=error,
            )
            if error:
                log.warning("endpoint generation failed: %s", error)

    def unload(self) -> None:
        """Nothing is held locally."""
