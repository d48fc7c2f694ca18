"""A chat model run in this process by transformers, streamed token by token.

``generate()`` runs in a short-lived background thread per answer and hands each new token to a
small queue-backed streamer; the caller's thread decodes the tokens incrementally and yields text.
Stop is a ``threading.Event`` read by a ``StoppingCriteria`` on every decode step. The generate
thread is always joined, also when the consumer stops iterating early (the iterator's ``finally``
sets an internal stop flag first, so the join takes at most one decode step).
"""

from __future__ import annotations

import gc
import logging
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bubble_desktop.core.errors import GenerationError, OutOfMemoryError, UserFacingError
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo
from bubble_desktop.core.settings import SamplingSettings

log = logging.getLogger(__name__)

_END = object()


def plain_prompt(messages: Sequence[ChatMessage]) -> str:
    """The fallback prompt for tokenizers without a chat template (Alpaca-style instruction format)."""
    parts: list[str] = []
    for m in messages:
        if m.role == "system":
            parts.append(m.content.strip())
        elif m.role == "user":
            parts.append(f"### Instruction:\n{m.content.strip()}")
        else:
            parts.append(f"### Response:\n{m.content.strip()}")
    parts.append("### Response:\n")
    return "\n\n".join(p for p in parts if p)


def render_chat(tokenizer: Any, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
    """Prompt text for ``messages``: the tokenizer's chat template, or the plain fallback format.

    The one place prompts are rendered, shared by inference and LoRA training (core/train), so a
    fine-tuned model sees exactly the format it is later asked in. With ``add_generation_prompt``
    False the last (assistant) message is rendered as a finished turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        text = plain_prompt(messages)
        if not add_generation_prompt and messages and messages[-1].role == "assistant":
            text = plain_prompt(messages[:-1]) + messages[-1].content.strip()
        return text
    dicts = [{"role": m.role, "content": m.content} for m in messages]
    try:
        out = tokenizer.apply_chat_template(
            dicts, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # e.g. "System role not supported": fold the system prompt into the first turn
        if not any(m.role == "system" for m in messages):
            raise GenerationError(f"The model's chat template failed: {exc}") from exc
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        rest = [dict(d) for d in dicts if d["role"] != "system"]
        if rest and rest[0]["role"] == "user":
            rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        else:
            rest.insert(0, {"role": "user", "content": system})
        out = tokenizer.apply_chat_template(rest, tokenize=False, add_generation_prompt=add_generation_prompt)
    return str(out)


class IncrementalDecoder:
    """Turn a growing list of token ids into text pieces without re-decoding everything each step.

    Decodes a short window (from ``prefix`` to the end) and emits only what is new, holding back
    text that ends in an incomplete UTF-8 sequence (U+FFFD) until the next token completes it.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def add(self, new_ids: Sequence[int]) -> str:
        self.ids.extend(new_ids)
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        full_text = self._decode(self.ids[self._prefix :])
        if len(full_text) > len(prefix_text) and not full_text.endswith("\ufffd"):
            piece = full_text[len(prefix_text) :]
            self._prefix = self._read
            self._read = len(self.ids)
            return piece
        return ""

    def flush(self) -> str:
        """Whatever is still held back (e.g. a stray partial byte at the very end)."""
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        full_text = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        rest = full_text[len(prefix_text) :]
        return rest.rstrip("\ufffd")


def _make_streamer(q: queue.SimpleQueue[Any]) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):
        """Puts each step's new token ids on a queue; skips the prompt (the first ``put``)."""

        def __init__(self) -> None:
            self._seen_prompt = False

        def put(self, value: Any) -> None:
            if not self._seen_prompt:
                self._seen_prompt = True
                return
            q.put(value.reshape(-1).tolist())

        def end(self) -> None:
            q.put(_END)

    return QueueStreamer()


def _make_stop_criteria(*events: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class EventStop(StoppingCriteria):
        """Stops generation at the next step once any of the events is set."""

        def __init__(self) -> None:
            self._answers: dict[tuple[bool, int, str], Any] = {}  # cached: no new tensor every step

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = any(e.is_set() for e in events)
            key = (stop, input_ids.shape[0], str(input_ids.device))
            answer = self._answers.get(key)
            if answer is None:
                answer = torch.full((key[1],), stop, dtype=torch.bool, device=input_ids.device)
                self._answers[key] = answer
            return answer

    return StoppingCriteriaList([EventStop()])


def _is_oom(exc: BaseException) -> bool:
    import torch

    found = (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
    oom_types = tuple(t for t in found if isinstance(t, type))
    return isinstance(exc, oom_types) or "out of memory" in str(exc).lower()


class _TransformersGeneration(Generation):
    """A Generation whose chunks come from a generate() thread owned by this object."""

    def __init__(
        self,
        model: TransformersChatModel,
        prompt_ids: list[int],
        sampling: SamplingSettings,
        cancel: threading.Event | None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self._model = model
        self._overrides = dict(overrides or {})
        self._prompt_ids = prompt_ids
        self._sampling = sampling
        self.cancel = cancel if cancel is not None else threading.Event()
        self._abandon = threading.Event()
        self.token_ids: tuple[int, ...] = ()  # the generated ids (special tokens included), once finished
        self.first_token_s: float | None = (
            None  # start -> first token (stats.ttft_s is -> first visible text)
        )
        # computed now, so a prompt that cannot fit fails at stream() rather than at the first chunk
        self._kwargs = model.generate_kwargs(sampling, len(prompt_ids))
        self._kwargs.update(self._overrides)
        super().__init__(self._produce())

    def _produce(self) -> Iterator[str]:
        import torch

        m = self._model
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        kwargs = dict(self._kwargs)
        max_new = int(kwargs["max_new_tokens"])
        input_ids = torch.tensor([self._prompt_ids], dtype=torch.long, device=m.device)
        kwargs.update(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            streamer=_make_streamer(q),
            stopping_criteria=_make_stop_criteria(self.cancel, self._abandon),
        )
        seed = self._sampling.seed

        def work() -> None:
            try:
                with torch.inference_mode():
                    if not self._sampling.greedy:
                        # -1: a fresh seed, so an earlier fixed seed does not make later answers repeat
                        torch.manual_seed(seed if seed >= 0 else random.SystemRandom().randrange(2**31))
                    m.model.generate(**kwargs)
            except BaseException as exc:  # handed to the consumer thread, which decides what the user sees
                q.put(exc)
                q.put(_END)

        decoder = IncrementalDecoder(m.tokenizer)
        t0 = time.perf_counter()
        t_first_token: float | None = None
        t_last_token = t0
        ttft: float | None = None
        finish: str = "stop"
        error: BaseException | None = None
        thread = threading.Thread(target=work, name="bubble-generate")
        thread.start()
        try:
            done = False
            while not done:
                batch: list[int] = []
                item = q.get()
                while True:  # take everything already queued: one decode for all of it when we lag behind
                    if item is _END:
                        done = True
                        break
                    if isinstance(item, BaseException):
                        error = item
                    else:
                        batch.extend(item)
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                if not batch:
                    continue
                now = time.perf_counter()
                if t_first_token is None:
                    t_first_token = now
                    self.first_token_s = now - t0
                t_last_token = now
                piece = decoder.add(batch)
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    yield piece
            tail = decoder.flush()
            if tail:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                yield tail
        finally:
            self._abandon.set()
            thread.join()
            n = len(decoder.ids)
            self.token_ids = tuple(decoder.ids)
            if error is not None:
                finish = "error"
            elif self.cancel.is_set() or (
                self._abandon.is_set() and n < max_new and not m.ends_with_eos(decoder.ids)
            ):
                finish = "cancelled"
            elif n >= max_new and not m.ends_with_eos(decoder.ids):
                finish = "length"
            decode_s = (t_last_token - t_first_token) if t_first_token is not None else 0.0
            if n > 1 and decode_s > 0:
                tps: float | None = (n - 1) / decode_s
            elif n == 1 and t_first_token is not None:
                tps = 1.0 / max(t_first_token - t0, 1e-9)
            else:
                tps = None
            message = None
            if error is not None:
                message = _error_message(error)
            self.stats = GenerationStats(
                prompt_tokens=len(self._prompt_ids),
                completion_tokens=n,
                ttft_s=ttft,
                tokens_per_s=tps,
                total_s=time.perf_counter() - t0,
                finish_reason=finish,  # type: ignore[arg-type]
                error=message,
            )
        if error is not None:
            log.warning("generation failed: %r", error)
            if _is_oom(error):
                m.empty_cache()
                raise OutOfMemoryError("The model ran out of memory while answering.") from error
            if isinstance(error, UserFacingError):
                raise error

    def close(self) -> None:
        """Stop generating (if still running) and join the generate thread."""
        self._abandon.set()
        try:
            super().close()
        except ValueError:  # "generator already executing": iterated by another thread, which now stops
            pass


def _error_message(exc: BaseException) -> str:
    if _is_oom(exc):
        return "The model ran out of memory while answering. " + OutOfMemoryError.default_hint
    if isinstance(exc, UserFacingError):
        return exc.message
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"Generation failed ({type(exc).__name__}: {first[:200]}). {GenerationError.default_hint}"


class TransformersChatModel:
    """A loaded transformers model + tokenizer that streams chat answers (ChatModel protocol)."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, *, is_seq2seq: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.is_seq2seq = is_seq2seq
        self.eos_token_ids = self._collect_eos_ids()
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = pad if pad is not None else (self.eos_token_ids[0] if self.eos_token_ids else 0)

    # --- prompt --------------------------------------------------------------------------------

    @property
    def device(self) -> Any:
        return self.model.device

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _collect_eos_ids(self) -> list[int]:
        ids: list[int] = []
        cfg_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if cfg_eos is None:
            cfg_eos = getattr(self.model.config, "eos_token_id", None)
        for value in (cfg_eos, getattr(self.tokenizer, "eos_token_id", None)):
            if isinstance(value, int):
                value = [value]
            for v in value or []:
                if isinstance(v, int) and v not in ids:
                    ids.append(v)
        return ids

    def ends_with_eos(self, ids: Sequence[int]) -> bool:
        return bool(ids) and ids[-1] in self.eos_token_ids

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text: the tokenizer's chat template, or the plain fallback format."""
        return render_chat(self.tokenizer, messages)

    def encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of the prompt for ``messages`` (chat template applied, generation prompt added)."""
        text = self.render_prompt(messages)
        add_special = self.is_seq2seq or not self.has_chat_template
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.encode(messages))

    def count_text_tokens(self, text: str) -> int:
        """Tokens of a bare piece of text (no template): for budgeting retrieved sources."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # --- generation ----------------------------------------------------------------------------

    def generate_kwargs(self, sampling: SamplingSettings, prompt_tokens: int = 0) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` from the sampling settings (no inputs, no streamer)."""
        max_new = sampling.max_new_tokens
        if not self.is_seq2seq and prompt_tokens:
            room = self.info.context_window - prompt_tokens
            if room < 1:
                raise GenerationError(
                    f"The prompt has {prompt_tokens} tokens, more than this model's context window "
                    f"({self.info.context_window}).",
                    "Start a new conversation, ask a shorter question, or use fewer sources.",
                )
            max_new = min(max_new, room)
        kw: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_ids or None,
        }
        if sampling.repetition_penalty != 1.0:
            from transformers import LogitsProcessorList

            from bubble_desktop.core.llm.penalty import generated_tokens_penalty

            # not generate()'s repetition_penalty: that one also punishes quoting the prompt's sources
            kw["logits_processor"] = LogitsProcessorList(
                [generated_tokens_penalty(sampling.repetition_penalty)]
            )
        if sampling.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(
                do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k
            )
            if sampling.min_p > 0:
                kw["min_p"] = sampling.min_p
        return kw

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        if self.model is None:
            raise GenerationError("The model has been unloaded.", "Load a model first.")
        return _TransformersGeneration(self, self.encode(messages), sampling, cancel)

    def stream_ids(
        self,
        prompt_ids: list[int],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
        **generate_overrides: Any,
    ) -> _TransformersGeneration:
        """Stream from ready-made prompt ids; ``generate_overrides`` go to generate() as is
        (benchmarks and tests use e.g. ``min_new_tokens`` to force a fixed answer length)."""
        return _TransformersGeneration(self, list(prompt_ids), sampling, cancel, generate_overrides)

    # --- memory --------------------------------------------------------------------------------

    def empty_cache(self) -> None:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # freeing memory is best effort
            log.debug("empty_cache failed", exc_info=True)

    def unload(self) -> None:
        """Drop the weights and free the memory (GPU memory too)."""
        self.model = None
        self.tokenizer = None
        self.empty_cache()
