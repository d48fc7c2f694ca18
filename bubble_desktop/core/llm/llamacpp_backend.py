"""GGUF chat models run in this process by llama.cpp (the ``xllamacpp`` binding of its server core).

The file is memory-mapped, never converted. One ``xllamacpp.Server`` per loaded model; each answer
is one ``handle_chat_completions(stream=True)`` call in a short-lived thread whose callback puts
chunk dicts on a queue and returns True to stop (checked once per decoded token, so stop takes at
most one decode step). The chat template is the GGUF's own (llama.cpp's Jinja); ``cache_prompt``
keeps the shared prefix of a conversation in the KV cache across turns. Before anything reaches
llama.cpp the file is checked with the ``gguf`` reader (:func:`inspect_gguf`), because llama.cpp
only says "Failed to init server" and logs the real reason to stderr.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import GenerationError, ModelError, ModelNotFoundError, OutOfMemoryError
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo, ProgressCallback
from bubble_desktop.core.llm.penalty import PENALTY_LAST_N  # the same window on both backends
from bubble_desktop.core.settings import SamplingSettings

log = logging.getLogger(__name__)

_END = object()
DEFAULT_GGUF_CONTEXT = 4096
# Architectures this build of llama.cpp loads (a subset check: an unknown name is refused before load)
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufFacts:
    """What the header of a GGUF file says (read without loading the weights)."""

    path: str
    arch: str
    name: str
    context_length: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    file_size: int
    has_chat_template: bool

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer: 2 × layers × ctx × (embd × kv_heads / heads) × 2 bytes."""
        heads = max(self.n_head, 1)
        kv_dim = self.n_embd * max(self.n_head_kv, 1) // heads
        return 2 * self.n_layers * n_ctx * kv_dim * 2


def _known_architectures() -> frozenset[str]:
    from gguf.constants import MODEL_ARCH_NAMES

    return frozenset(MODEL_ARCH_NAMES.values())


def inspect_gguf(path: str | os.PathLike[str]) -> GgufFacts:
    """Validate a GGUF file with the ``gguf`` reader; UserFacingError for anything wrong with it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(
            f"The GGUF file {str(p)!r} is not there (moved, deleted, or on a drive that is not connected).",
            "Reconnect the drive or choose the file again in Settings → Model.",
        )
    if not p.is_file():
        raise ModelNotFoundError(f"{str(p)!r} is not a file.", "Choose a .gguf file.")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
        size = p.stat().st_size
    except OSError as exc:
        raise ModelNotFoundError(
            f"The GGUF file {str(p)!r} cannot be read: {exc.strerror or exc}",
            "Check that the drive is connected and the file is readable.",
        ) from exc
    if magic != _GGUF_MAGIC:
        raise ModelError(
            f"{p.name} is not a GGUF file (it does not start with the GGUF signature).",
            "Choose a real .gguf model file; a file renamed to .gguf cannot be loaded.",
        )
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(p), "r")
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on cut-off files
        raise ModelError(
            f"{p.name} is damaged or incomplete ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}).",
            "The download was probably interrupted: download the file again.",
        ) from exc

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return default
        try:
            return f.contents()
        except Exception:
            return default

    arch = str(field("general.architecture", "") or "")
    try:
        # the last tensor must end inside the file: a cut-off download fails here
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception:
        end = size + 1
    if end > size:
        raise ModelError(
            f"{p.name} is incomplete: the weights need {end:,} bytes but the file has {size:,}.",
            "The download was probably interrupted: download the file again.",
        )
    if not arch:
        raise ModelError(f"{p.name} does not say which model architecture it holds.", "Choose another GGUF file.")
    if arch not in _known_architectures():
        raise ModelError(
            f"{p.name} holds a {arch!r} model, an architecture this version of llama.cpp does not know.",
            "Update Bubble, or choose a GGUF of a supported model (Llama, Qwen, Mistral, Gemma, GLM-4, Phi …).",
        )

    def num(key: str, default: int = 0) -> int:
        value = field(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer arrays (some archs): take the largest
            value = max(value) if value else default
        try:
            return int(value)
        except (TypeError, ValueError):
            return default

    n_head = num("attention.head_count", 1)
    return GgufFacts(
        path=str(p),
        arch=arch,
        name=str(field("general.name", "") or p.stem),
        context_length=num("context_length", 0),
        n_layers=num("block_count", 0),
        n_embd=num("embedding_length", 0),
        n_head=n_head,
        n_head_kv=num("attention.head_count_kv", n_head),
        file_size=size,
        has_chat_template=field("tokenizer.chat_template") is not None,
    )


def physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    return max(1, n or os.cpu_count() or 1)


def check_memory(facts: GgufFacts, n_ctx: int, gpu_layers: int = 0) -> None:
    """Refuse to load when weights + KV cache clearly exceed the free RAM (instead of swapping)."""
    import psutil

    need = facts.file_size + facts.kv_cache_bytes(n_ctx) + 64 * 2**20  # + compute buffers, roughly
    if gpu_layers > 0:
        return  # VRAM is judged by llama.cpp's own fitting (fit_params)
    free = psutil.virtual_memory().available
    if need > free:
        smaller = max(512, n_ctx // 4)
        raise OutOfMemoryError(
            f"{Path(facts.path).name} needs about {need / 2**30:.1f} GB (weights {facts.file_size / 2**30:.1f} GB "
            f"+ memory for {n_ctx:,} tokens of context) but only {free / 2**30:.1f} GB is free.",
            f"Set the context window to {smaller:,} in Settings → Model, close other programs, "
            "or use a smaller quantization of the model (e.g. Q4_K_M instead of Q8_0).",
        )


def _gpu_available() -> str:
    """'' when llama.cpp has only the CPU; else the first GPU device's name."""
    import xllamacpp

    try:
        for dev in xllamacpp.get_device_info():
            if "CPU" not in str(dev.get("type", "")) and str(dev.get("name", "")) != "CPU":
                return str(dev.get("name", "GPU"))
    except Exception:
        log.debug("get_device_info failed", exc_info=True)
    return ""


class LlamaCppGeneration(Generation):
    """One streamed answer: a thread runs ``handle_chat_completions``; this object yields its text."""

    def __init__(self, model: LlamaCppChatModel, request: dict[str, Any], cancel: threading.Event | None) -> None:
        self._model = model
        self._request = request
        self.cancel = cancel if cancel is not None else threading.Event()
        self._abandon = threading.Event()
        self.timings: dict[str, Any] = {}
        super().__init__(self._produce())

    def _produce(self) -> Iterator[str]:
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        server = self._model.server
        cancel, abandon = self.cancel, self._abandon

        def callback(chunk: Any) -> bool:
            q.put(chunk)
            return cancel.is_set() or abandon.is_set()

        def work() -> None:
            try:
                with self._model.lock:  # one request at a time on the one slot
                    result = server.handle_chat_completions(self._request, callback)
                if isinstance(result, dict) and "error" in result:
                    q.put(RuntimeError(str(result["error"])))
            except BaseException as exc:  # handed to the consumer thread
                q.put(exc)
            finally:
                q.put(_END)

        t0 = time.perf_counter()
        ttft: float | None = None
        t_first: float | None = None
        t_last = t0
        n_chunks = 0
        finish = "stop"
        usage: dict[str, Any] = {}
        error: BaseException | None = None
        thread = threading.Thread(target=work, name="bubble-llamacpp", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    error = item
                    continue
                if not isinstance(item, dict):
                    continue
                if "error" in item:
                    error = RuntimeError(str(item["error"]))
                    continue
                if isinstance(item.get("timings"), dict):
                    self.timings = item["timings"]
                if isinstance(item.get("usage"), dict):
                    usage = item["usage"]
                for choice in item.get("choices") or ():
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        now = time.perf_counter()
                        if t_first is None:
                            t_first = now
                            ttft = now - t0
                        t_last = now
                        n_chunks += 1
                        yield str(text)
        finally:
            abandon.set()
            thread.join()
            tm = self.timings
            cancelled = cancel.is_set() or (abandon.is_set() and not tm and error is None and finish != "length")
            if error is not None:
                reason = "error"
            elif cancelled and not tm:
                reason = "cancelled"
            elif finish == "length":
                reason = "length"
            else:
                reason = "stop"
            completion = int(tm.get("predicted_n") or usage.get("completion_tokens") or n_chunks)
            prompt = int(usage.get("prompt_tokens") or (int(tm.get("prompt_n") or 0) + int(tm.get("cache_n") or 0)))
            tps = tm.get("predicted_per_second")
            if tps is None and n_chunks > 1 and t_first is not None and t_last > t_first:
                tps = (n_chunks - 1) / (t_last - t_first)
            self.stats = GenerationStats(
                prompt_tokens=prompt,
                completion_tokens=completion,
                ttft_s=ttft,
                tokens_per_s=float(tps) if tps else None,
                total_s=time.perf_counter() - t0,
                finish_reason=reason,  # type: ignore[arg-type]
                error=None if error is None else f"Generation failed: {str(error)[:200]}",
            )
        if error is not None:
            log.warning("llama.cpp generation failed: %r", error)
            raise GenerationError(f"llama.cpp could not answer: {str(error)[:200]}") from error

    def close(self) -> None:
        self._abandon.set()
        try:
            super().close()
        except ValueError:  # "generator already executing": iterated by another thread, which now stops
            pass


class LlamaCppChatModel:
    """A GGUF model loaded by llama.cpp, streaming chat answers (ChatModel protocol)."""

    def __init__(self, server: Any, facts: GgufFacts, info: ModelInfo, *, threads: int, gpu_layers: int) -> None:
        self.server = server
        self.facts = facts
        self.info = info
        self.threads = threads
        self.gpu_layers = gpu_layers
        self.lock = threading.Lock()

    @property
    def status_text(self) -> str:
        """What the status bar shows, e.g. "CPU · 2 threads" or "CUDA0 · 33/33 layers"."""
        if self.gpu_layers > 0:
            return f"{self.info.device} · {min(self.gpu_layers, self.facts.n_layers)}/{self.facts.n_layers} layers"
        return f"CPU · {self.threads} thread{'s' if self.threads != 1 else ''}"

    def request(self, messages: Sequence[ChatMessage], sampling: SamplingSettings) -> dict[str, Any]:
        """The OpenAI-shaped request dict for llama.cpp from our messages and sampling settings."""
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if not self.facts.has_chat_template:
            from bubble_desktop.core.llm.transformers_backend import plain_prompt

            # no template in the file: the plain instruction format as one raw prompt
            msgs = [{"role": "user", "content": plain_prompt(messages)}]
        seed = sampling.seed if sampling.seed >= 0 else random.SystemRandom().randrange(2**31)
        req: dict[str, Any] = {
            "messages": msgs,
            "stream": True,
            "max_tokens": sampling.max_new_tokens,
            "temperature": max(sampling.temperature, 0.0),
            "top_p": sampling.top_p if sampling.top_p > 0 else 1.0,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repetition_penalty,
            "repeat_last_n": PENALTY_LAST_N,
            "seed": seed,
            "cache_prompt": True,
            "timings_per_token": False,
        }
        if sampling.greedy:
            req.update(temperature=0.0, top_k=1)
        return req

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        self._live_server()
        return LlamaCppGeneration(self, self.request(messages, sampling), cancel)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens via llama.cpp itself (max_tokens 0; also warms the prompt cache)."""
        server = self._live_server()
        req = self.request(messages, SamplingSettings())
        req.update(stream=False, max_tokens=0, n_predict=0)
        with self.lock:
            out = server.handle_chat_completions(req)
        usage = out.get("usage") if isinstance(out, dict) else None
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            return int(usage["prompt_tokens"])
        return sum(len(m.content) for m in messages) // 3 + 8 * len(messages)  # rough, never fails

    def _live_server(self) -> Any:
        if self.server is None:
            raise GenerationError("The model has been unloaded.", "Load a model first.")
        return self.server

    def count_text_tokens(self, text: str) -> int:
        return max(1, len(text) // 3)

    def unload(self) -> None:
        self.server = None
        import gc

        gc.collect()


def load_gguf(path: str, *, context_window: int = 0, device: str = "auto", threads: int = 0,
              progress: ProgressCallback | None = None) -> LlamaCppChatModel:
    """Validate and load a GGUF file with llama.cpp; UserFacingError for anything the user can fix."""
    if progress:
        progress(0.0, "Checking the GGUF file")
    facts = inspect_gguf(path)
    n_ctx = context_window if context_window > 0 else min(facts.context_length or DEFAULT_GGUF_CONTEXT,
                                                          DEFAULT_GGUF_CONTEXT)
    if progress:
        progress(0.05, "Loading llama.cpp")
    import xllamacpp

    gpu_name = "" if device == "cpu" else _gpu_available()
    if device in ("cuda", "mps") and not gpu_name:
        raise ModelError(f"{device.upper()} was chosen but this llama.cpp build has no GPU support.",
                         "Set the device to Auto or CPU.")
    gpu_layers = (facts.n_layers + 1) if gpu_name else 0
    check_memory(facts, n_ctx, gpu_layers)
    n_threads = threads if threads > 0 else physical_cores()
    params = xllamacpp.CommonParams()
    params.model.path = facts.path
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.n_gpu_layers = gpu_layers
    params.cache_prompt = True
    params.use_jinja = True
    params.warmup = False
    # llama.cpp logs every request at its default verbosity (3) to stderr; errors only unless debugging
    params.verbosity = 3 if log.isEnabledFor(logging.DEBUG) else 0
    if progress:
        progress(0.1, "Mapping the weights")
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:
        raise ModelError(
            f"llama.cpp could not load {Path(facts.path).name} ({facts.arch}): {str(exc)[:200]}",
            "Try a smaller context window, or another quantization of the model.",
        ) from exc
    device_text = gpu_name if gpu_layers else "cpu"
    info = ModelInfo(
        name=Path(facts.path).stem,
        path=facts.path,
        arch=facts.arch,
        device=device_text,
        dtype="gguf",
        context_window=n_ctx,
    )
    model = LlamaCppChatModel(server, facts, info, threads=n_threads, gpu_layers=gpu_layers)
    model.info = replace(info, runs_on=model.status_text)
    log.info("loaded %s (%s) with llama.cpp: %s, n_ctx %d", info.name, facts.arch, model.status_text, n_ctx)
    if progress:
        progress(1.0, "Ready")
    return model
