"""GGUF chat models run by llama.cpp (the ``xllamacpp`` binding of its server core) in a child process.

The file is memory-mapped, never converted. Each loaded model is one spawned child process that
owns one ``xllamacpp.Server`` (:func:`serve`); this process talks to it over a pipe. Why a child:
``xllamacpp.Server(...)`` holds the GIL for the whole load (0.9 s for SmolLM2-135M, seconds for a
7B model that llama.cpp repacks), and the ``gguf`` reader's header check holds it in 100+ ms
bursts: in this process the GUI froze for 1.5 s per load (tests/bench/gui_responsiveness.py). In
a child the GUI thread never waits, and a llama.cpp abort on a file it cannot handle ends the child,
not the app.

Each answer is one ``handle_chat_completions(stream=True)`` call in the child whose callback sends
the chunk dicts up the pipe and returns True to stop once the shared cancel counter reaches the
request's id (checked once per decoded token, so stop takes at most one decode step). The chat
template is the GGUF's own (llama.cpp's Jinja); ``cache_prompt`` keeps the shared prefix of a
conversation in the KV cache across turns. Before anything reaches llama.cpp the file is checked
by reading its header (:func:`inspect_gguf`), because llama.cpp only says "Failed to init
server" and logs the real reason to stderr; the header is read by :mod:`.gguf_header` (40 ms
where ``gguf.GGUFReader`` took 4 s on SmolLM2's vocabulary).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import (
    GenerationError,
    ModelError,
    ModelNotFoundError,
    OutOfMemoryError,
    UserFacingError,
)
from bubble_desktop.core.i18n import N_
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo, ProgressCallback
from bubble_desktop.core.llm.llamacpp_child import (  # the light module the child process imports
    GgufFacts,
    serve,
)
from bubble_desktop.core.llm.penalty import PENALTY_LAST_N  # the same window on both backends
from bubble_desktop.core.settings import SamplingSettings

log = logging.getLogger(__name__)

# A stream wakes for what its child sends and for its cancel event (a thread sleeps on it), not on
# a timer: every wake-up of this process takes CPU from llama.cpp's threads, which wait for each
# other at every step (polling every 5 ms cost ~5 % of the tokens/s on 2 cores). POLL_S is only a
# safety net; WATCH_S is how soon the stop thread notices its stream ended.
POLL_S = 0.5
WATCH_S = 0.25

# Architectures this build of llama.cpp loads (a subset check: an unknown name is refused before load)
_GGUF_MAGIC = b"GGUF"


def _known_architectures() -> frozenset[str]:
    from bubble_desktop.core.llm.gguf_constants import gguf_constants

    return frozenset(gguf_constants().MODEL_ARCH_NAMES.values())


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
    return _read_facts(p, size)


def _read_facts(p: Path, size: int) -> GgufFacts:
    from bubble_desktop.core.llm.gguf_header import GgufHeaderError, LongArray, read_header

    try:
        header = read_header(p)
    except (GgufHeaderError, OSError, ValueError) as exc:
        raise ModelError(
            f"{p.name} is damaged or incomplete ({str(exc)[:160]}).",
            "The download was probably interrupted: download the file again.",
        ) from exc

    def field(key: str, default: Any = None) -> Any:
        value = header.metadata.get(key, default)
        return default if isinstance(value, LongArray) else value

    arch = str(field("general.architecture", "") or "")
    end = header.data_end  # the last tensor must end inside the file: a cut-off download fails here
    if end > size:
        raise ModelError(
            f"{p.name} is incomplete: the weights need {end:,} bytes but the file has {size:,}.",
            "The download was probably interrupted: download the file again.",
        )
    if not arch:
        raise ModelError(
            f"{p.name} does not say which model architecture it holds.", "Choose another GGUF file."
        )
    if arch not in _known_architectures():
        raise ModelError(
            f"{p.name} holds a {arch!r} model, an architecture this version of llama.cpp does not know.",
            (
                "Update Bubble, or choose a GGUF of a supported "
                "model (Llama, Qwen, Mistral, Gemma, GLM-4, Phi …)."
            ),
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
    n_layers = num("block_count", 0)
    layer_bytes = [0] * n_layers
    output_bytes = embd_bytes = 0
    for tensor_name, _offset, nbytes in header.tensors:
        if tensor_name.startswith("blk."):
            index = tensor_name.split(".", 2)[1]
            if index.isdigit() and int(index) < n_layers:
                layer_bytes[int(index)] += nbytes
        elif tensor_name.startswith("output"):
            output_bytes += nbytes
        elif tensor_name.startswith("token_embd"):
            embd_bytes += nbytes
    return GgufFacts(
        path=str(p),
        arch=arch,
        name=str(field("general.name", "") or p.stem),
        context_length=num("context_length", 0),
        n_layers=n_layers,
        n_embd=num("embedding_length", 0),
        n_head=n_head,
        n_head_kv=num("attention.head_count_kv", n_head),
        file_size=size,
        has_chat_template=field("tokenizer.chat_template") is not None,
        layer_bytes=tuple(layer_bytes),
        output_bytes=output_bytes or embd_bytes,  # tied embeddings: the head is the embedding matrix
    )


class _LlamaCppError(RuntimeError):
    """An error llama.cpp reported for a request; ``detail`` is its error object when it sent one."""

    def __init__(self, error: Any) -> None:
        self.detail: dict[str, Any] = error if isinstance(error, dict) else {}
        super().__init__(str(self.detail.get("message") or error))


class LlamaCppGeneration(Generation):
    """One streamed answer: the child runs ``handle_chat_completions``; this object yields its text."""

    def __init__(
        self, model: LlamaCppChatModel, request: dict[str, Any], cancel: threading.Event | None
    ) -> None:
        self._model = model
        self._request = request
        self.cancel = cancel if cancel is not None else threading.Event()
        self._rid = 0  # this request's id in the child, once sent
        self.timings: dict[str, Any] = {}
        super().__init__(self._produce())

    def _stop_in_child(self) -> None:
        if self._rid:
            self._model.cancel_up_to(self._rid)

    def _watch_cancel(self, finished: threading.Event) -> None:
        while not finished.is_set():
            if self.cancel.wait(WATCH_S):
                self._stop_in_child()
                return

    def _produce(self) -> Iterator[str]:
        model = self._model
        t0 = time.perf_counter()
        ttft: float | None = None
        t_first: float | None = None
        t_last = t0
        n_chunks = 0
        finish = "stop"
        usage: dict[str, Any] = {}
        error: BaseException | None = None
        done = False
        with model.lock:  # one request at a time on the one slot
            conn = model.live_conn()
            self._rid = model.next_request_id()
            finished = threading.Event()
            try:
                try:
                    conn.send(("chat", self._rid, self._request))
                except (EOFError, OSError) as exc:  # BrokenPipeError: the child has gone
                    model.child_died()
                    error = exc
                    done = True
                # a stop (the caller's cancel event) reaches the child at once, through a thread that
                # sleeps on the event: this loop then only wakes for what the child sends, and stop
                # takes ≤ 1 decode step (the child checks its cancel flag at every token)
                threading.Thread(
                    target=self._watch_cancel, args=(finished,), name="llamacpp-stop", daemon=True
                ).start()
                while not done:
                    try:
                        if not conn.poll(POLL_S):
                            if self.cancel.is_set():
                                self._stop_in_child()
                            continue
                        kind, payload = conn.recv()
                    except (EOFError, OSError) as exc:
                        model.child_died()
                        error = exc
                        done = True
                        break
                    if kind == "done":  # first: a stop that comes with the end must not wait for another
                        done = True
                        if isinstance(payload, dict) and "error" in payload:
                            error = _LlamaCppError(payload["error"])
                        break
                    if self.cancel.is_set():  # stopped: what is already in the pipe is not shown
                        break
                    if kind == "error":
                        error = RuntimeError(str(payload))
                        continue
                    for item in payload if kind == "chunks" else ():
                        if self.cancel.is_set():
                            break  # the rest of a coalesced batch is not shown either
                        if not isinstance(item, dict):
                            continue
                        if "error" in item:
                            error = _LlamaCppError(item["error"])
                            continue
                        if isinstance(item.get("timings"), dict):
                            self.timings = item["timings"]
                        if isinstance(item.get("usage"), dict):
                            usage = item["usage"]
                        for choice in item.get("choices") or ():
                            if choice.get("finish_reason"):
                                finish = str(choice["finish_reason"])
                            # a chat chunk's delta, or a completion chunk's text (no chat template)
                            text = (choice.get("delta") or {}).get("content") or choice.get("text")
                            if text:
                                now = time.perf_counter()
                                if t_first is None:
                                    t_first = now
                                    ttft = now - t0
                                t_last = now
                                n_chunks += 1
                                yield str(text)
            finally:
                finished.set()
                cut_short = not done
                if cut_short:  # the consumer stopped early: stop the child and keep the pipe in step
                    self._stop_in_child()
                    model.drain(conn)
                tm = self.timings
                if error is not None:
                    reason = "error"
                elif (self.cancel.is_set() or cut_short) and not tm:
                    reason = "cancelled"
                elif finish == "length":
                    reason = "length"
                else:
                    reason = "stop"
                completion = int(tm.get("predicted_n") or usage.get("completion_tokens") or n_chunks)
                prompt = int(
                    usage.get("prompt_tokens") or (int(tm.get("prompt_n") or 0) + int(tm.get("cache_n") or 0))
                )
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
            if isinstance(error, (EOFError, OSError)):
                raise GenerationError(
                    "llama.cpp stopped unexpectedly while answering.",
                    "Reload the model (File → Reload model).",
                ) from error
            detail = error.detail if isinstance(error, _LlamaCppError) else {}
            if detail.get("type") == "exceed_context_size_error":
                needed, window = int(detail.get("n_prompt_tokens") or 0), int(detail.get("n_ctx") or 0)
                raise GenerationError(
                    f"The conversation ({needed:,} tokens) does not fit "
                    f"the model's context window of {window:,} tokens.",
                    "Start a new chat, shorten the message, or raise the context window in Settings → Model.",
                ) from error
            raise GenerationError(f"llama.cpp could not answer: {str(error)[:200]}") from error

    def close(self) -> None:
        self._stop_in_child()  # a thread iterating this generation sees "done" within one decode step
        try:
            super().close()
        except ValueError:  # "generator already executing": iterated by another thread, which now stops
            pass


class LlamaCppChatModel:
    """A GGUF model loaded by llama.cpp in a child process, streaming chat answers (ChatModel protocol)."""

    def __init__(
        self,
        process: Any,
        conn: Any,
        cancel_id: Any,
        facts: GgufFacts,
        info: ModelInfo,
        *,
        threads: int,
        gpu_layers: int,
        child_peak_rss: int = 0,
        child_rss_start: int = 0,
    ) -> None:
        self.process = process
        self.conn: Any = conn
        self._cancel_id = cancel_id  # multiprocessing.Value("q"): the child stops requests with id <= it
        self.facts = facts
        self.info = info
        self.threads = threads
        self.gpu_layers = gpu_layers
        self.child_peak_rss = child_peak_rss  # bytes, as the child reported it after loading
        self.child_rss_start = child_rss_start  # bytes, the child before it loaded the model
        self.lock = threading.Lock()
        self._ids = 0

    @property
    def status_text(self) -> str:
        """What the status bar shows: "CPU · 2 threads", "CUDA0 · 33/33 layers", or with only part of
        the model on the GPU "CUDA0 · 20/33 layers · CPU 4 threads"."""
        # whole sentences marked for translation: the status bar shows them localized
        device, layers, threads = self.info.device, self.facts.n_layers, self.threads
        if self.gpu_layers > layers:
            return N_(f"{device} · {layers}/{layers} layers")
        if self.gpu_layers > 0:
            blocks = self.gpu_layers
            if threads == 1:
                return N_(f"{device} · {blocks}/{layers} layers · CPU 1 thread")
            return N_(f"{device} · {blocks}/{layers} layers · CPU {threads} threads")
        return N_("CPU · 1 thread") if threads == 1 else N_(f"CPU · {threads} threads")

    # --- talking to the child ------------------------------------------------------------------

    def next_request_id(self) -> int:
        self._ids += 1
        return self._ids

    def cancel_up_to(self, rid: int) -> None:
        with self._cancel_id.get_lock():
            if self._cancel_id.value < rid:
                self._cancel_id.value = rid

    def live_conn(self) -> Any:
        if self.conn is None:
            raise GenerationError("The model has been unloaded.", "Load a model first.")
        return self.conn

    def drain(self, conn: Any) -> None:
        """Read until the child says the current request is done (it was told to stop)."""
        try:
            while True:
                kind, _ = conn.recv()
                if kind == "done":
                    return
        except (EOFError, OSError):
            self.child_died()

    def child_died(self) -> None:
        log.error(
            "the llama.cpp child process ended unexpectedly (exit code %s)",
            getattr(self.process, "exitcode", None),
        )
        self.conn = None

    def call(self, kind: str, payload: Any) -> Any:
        """One request/response exchange with the child (not streaming)."""
        with self.lock:
            conn = self.live_conn()
            try:
                conn.send((kind, self.next_request_id(), payload))
                reply_kind, reply = conn.recv()
            except (EOFError, OSError) as exc:
                self.child_died()
                raise GenerationError("llama.cpp stopped unexpectedly.", "Reload the model.") from exc
        if reply_kind == "error":
            raise GenerationError(f"llama.cpp could not answer: {str(reply)[:200]}")
        return reply

    # --- ChatModel -----------------------------------------------------------------------------

    def request(self, messages: Sequence[ChatMessage], sampling: SamplingSettings) -> dict[str, Any]:
        """The OpenAI-shaped request dict for llama.cpp from our messages and sampling settings: a chat
        request, or for a file without a chat template a completion of the plain instruction format
        (as a chat request llama.cpp would wrap that in a template of its own choosing)."""
        prompt: dict[str, Any]
        if self.facts.has_chat_template:
            prompt = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
        else:
            from bubble_desktop.core.llm.transformers_backend import plain_prompt

            prompt = {"prompt": plain_prompt(messages)}
        seed = sampling.seed if sampling.seed >= 0 else random.SystemRandom().randrange(2**31)
        req: dict[str, Any] = {
            **prompt,
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
        self.live_conn()
        return LlamaCppGeneration(self, self.request(messages, sampling), cancel)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens via llama.cpp itself (max_tokens 0; also warms the prompt cache)."""
        req = self.request(messages, SamplingSettings())
        req.update(stream=False, max_tokens=0, n_predict=0)
        out = self.call("complete", req)
        usage = out.get("usage") if isinstance(out, dict) else None
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            return int(usage["prompt_tokens"])
        return sum(len(m.content) for m in messages) // 3 + 8 * len(messages)  # rough, never fails

    def count_text_tokens(self, text: str) -> int:
        return max(1, len(text) // 3)

    def peak_rss(self) -> int:
        """The child's peak resident memory so far, in bytes (what the model costs)."""
        return int(self.call("rss", None))

    def unload(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with self.lock:
                try:
                    conn.send(("quit", 0, None))
                except (OSError, ValueError):
                    pass
            conn.close()
        proc = self.process
        if proc is not None:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


# --- loading (in this process) -------------------------------------------------------------------

_ERRORS: dict[str, type[UserFacingError]] = {
    cls.__name__: cls for cls in (ModelError, ModelNotFoundError, OutOfMemoryError, GenerationError)
}


def load_gguf(
    path: str,
    *,
    context_window: int = 0,
    device: str = "auto",
    threads: int = 0,
    gpu_layers: int = -1,
    progress: ProgressCallback | None = None,
) -> LlamaCppChatModel:
    """Validate and load a GGUF file with llama.cpp in a child process; UserFacingError for anything
    the user can fix. Blocks the calling (worker) thread, never holding the GIL while it waits."""
    import multiprocessing

    if progress:
        progress(0.0, "Starting llama.cpp")
    facts = inspect_gguf(path)  # the header here: clear errors before any process starts
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=True)
    cancel_id = context.Value("q", 0)
    options = {
        "facts": facts,
        "context_window": context_window,
        "device": device,
        "threads": threads,
        "gpu_layers": gpu_layers,
        "log_level": logging.getLogger().getEffectiveLevel(),
    }
    # the frozen entry points call multiprocessing.freeze_support(), so this works in the bundle too
    proc = context.Process(
        target=serve,
        args=(child_conn, cancel_id, str(Path(path).expanduser()), options),
        name="bubble-llamacpp",
        daemon=True,
    )
    proc.start()
    child_conn.close()
    try:
        while True:
            try:
                kind, payload = parent_conn.recv()
            except (EOFError, OSError) as exc:
                proc.join(timeout=5)
                raise ModelError(
                    f"llama.cpp stopped while loading {Path(path).name} (exit code {proc.exitcode}).",
                    "The file may be damaged or of a kind this llama.cpp cannot run: try another GGUF file.",
                ) from exc
            if kind == "progress":
                if progress:
                    progress(float(payload[0]), str(payload[1]))
            elif kind == "failed":
                name, message, hint = payload
                raise _ERRORS.get(name, ModelError)(message, hint)
            elif kind == "ready":
                break
    except BaseException:
        parent_conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        raise
    notices: tuple[str, ...] = ()
    if payload.get("template_unusable"):  # llama.cpp could not use the file's chat template
        facts = replace(facts, has_chat_template=False)  # so requests go in the plain format
        notices = (
            N_(
                f"llama.cpp cannot use the chat template in {Path(facts.path).name}: the model gets "
                "a plain instruction format instead, which it may follow less well. Another "
                "conversion of this model (a newer GGUF) may carry a template that works."
            ),
        )
    gpu_layers = int(payload["gpu_layers"])
    info = ModelInfo(
        name=Path(facts.path).stem,
        path=facts.path,
        arch=facts.arch,
        device=str(payload["gpu_name"]) if gpu_layers else "cpu",
        dtype="gguf",
        context_window=int(payload["n_ctx"]),
        notices=notices,
    )
    model = LlamaCppChatModel(
        proc,
        parent_conn,
        cancel_id,
        facts,
        info,
        threads=int(payload["threads"]),
        gpu_layers=gpu_layers,
        child_peak_rss=int(payload["peak_rss"]),
        child_rss_start=int(payload.get("rss_start", 0)),
    )
    model.info = replace(info, runs_on=model.status_text)
    log.info(
        "loaded %s (%s) with llama.cpp in process %s: %s, n_ctx %d",
        info.name,
        facts.arch,
        proc.pid,
        model.status_text,
        info.context_window,
    )
    if progress:
        progress(1.0, "Ready")
    return model
