"""ChatGLM-6B / -int4 / ChatGLM2-6B / ChatGLM3-6B behind the ChatModel protocol, via their own stream_chat.

Loading resolves the folder's remote classes through transformers and wraps them in compat subclasses
(:mod:`.compat`); generation calls each version's own ``stream_chat`` so prompts, special tokens and
post-processing stay exactly what THUDM shipped: v1/v2 take history as ``(query, response)`` tuples,
v3 as role dicts; sampling is always passed by keyword (positional arguments differ between versions).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import (
    GenerationError,
    ModelError,
    ModelNotFoundError,
    OutOfMemoryError,
    RemoteCodeConsentRequired,
    UnsupportedModelError,
)
from bubble_desktop.core.i18n import N_
from bubble_desktop.core.llm.adapters import Adapter, apply_lora, inspect_adapter, load_prefix_encoder
from bubble_desktop.core.llm.base import (
    ChatMessage,
    Generation,
    GenerationStats,
    LoadRequest,
    ModelInfo,
    ProgressCallback,
)
from bubble_desktop.core.settings import SamplingSettings

log = logging.getLogger(__name__)

# characters ChatGLM-6B's process_response may still rewrite once the next character arrives
# ("," before a Chinese character becomes "，"), and the replacement character of a half-decoded byte
_HOLD_BACK = ",!:;?\ufffd"


class GccMissingError(ModelError):
    """ChatGLM int4 on the CPU compiles a small C kernel at load time and needs a C compiler."""


class KernelCompileError(ModelError):
    """gcc exists, but compiling ChatGLM's int4 CPU kernel failed (the remote code only asserts)."""

    default_hint = (
        "Fix the C compiler (its message above says what is wrong), or run the fp16 ChatGLM-6B on the "
        "CPU, or the int4 model on an NVIDIA GPU."
    )


def kernel_compile_error(folder: Path) -> str | None:
    """Compile the int4 CPU kernel as the model's own code does; gcc's message when it fails, else None.

    THUDM's quantization.py runs ``os.system("gcc ...")`` (the compiler writes to the terminal) and
    then ``assert cpu_kernels.load``, so all the user would see is an empty ``AssertionError``.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bubble-kernel-") as tmp:
        source = folder / "quantization_kernels.c"  # the plain kernel, the code's last resort
        if not source.is_file():
            source = Path(tmp) / "probe.c"
            source.write_text("int probe(int x) { return x + 1; }\n", encoding="utf-8")
        command = ["gcc", "-O3", "-fPIC", "-std=c99", str(source), "-shared", "-o", str(Path(tmp) / "k.so")]
        try:
            done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    if done.returncode == 0:
        return None
    text = (done.stderr.strip() or done.stdout.strip())[-800:]
    return text or f"gcc exited with status {done.returncode}"


class CpmKernelsMissingError(ModelError):
    """ChatGLM int4 on an NVIDIA GPU needs the cpm_kernels package (and a working CUDA driver)."""


def is_chatglm_folder(folder: str | os.PathLike[str]) -> bool:
    """True for a folder whose config names the ChatGLM remote code."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    auto_map = cfg.get("auto_map") or {}
    refs = " ".join(str(v) for v in auto_map.values())
    return cfg.get("model_type") == "chatglm" or "chatglm" in refs.lower()


def detect_variant(folder: str | os.PathLike[str]) -> str:
    """'chatglm' (6B v1), 'chatglm2' or 'chatglm3', from the folder's config and tokenizer code."""
    root = Path(folder)
    cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    if "position_encoding_2d" in cfg or "inner_hidden_size" in cfg:
        return "chatglm"
    try:
        tok_src = (root / "tokenization_chatglm.py").read_text(encoding="utf-8")
    except OSError:
        tok_src = ""
    return "chatglm3" if "build_chat_input" in tok_src else "chatglm2"


def quantization_bits(folder: str | os.PathLike[str]) -> int:
    cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    try:
        return int(cfg.get("quantization_bit") or 0)
    except (TypeError, ValueError):
        return 0


def check_c_compiler(which: Any = None, platform: str | None = None) -> None:
    """Raise GccMissingError when the int4 CPU kernel cannot be compiled here.

    The int4 code shells out to ``gcc`` (``clang`` on macOS for its parallel kernel, then ``gcc``)
    while loading; without it the load fails much later with a confusing error.
    """
    platform = platform or sys.platform
    which = which or shutil.which
    if which("gcc"):
        return
    if platform.startswith("win"):
        hint = N_(
            "Install a 64-bit gcc (MinGW-w64, e.g. from winlibs.com, or TDM-GCC) and put its bin folder on "
            "PATH, then restart Bubble. Or run this model on an NVIDIA GPU, or choose the non-int4 "
            "ChatGLM model."
        )
    elif platform == "darwin":
        hint = N_(
            "Install the command line tools (xcode-select --install) or gcc from Homebrew. "
            "Or choose the non-int4 ChatGLM model."
        )
    else:
        hint = N_(
            "Install gcc (e.g. sudo apt install gcc, or sudo dnf install gcc). "
            "Or run this model on an NVIDIA GPU, or choose the non-int4 ChatGLM model."
        )
    raise GccMissingError(
        "ChatGLM int4 on the CPU compiles a small C kernel while loading, and no C compiler (gcc) was found.",
        hint,
    )


def check_cpm_kernels() -> None:
    """Raise CpmKernelsMissingError when int4 on CUDA cannot work (cpm_kernels absent or no CUDA driver)."""
    try:
        import cpm_kernels  # type: ignore[import-not-found]  # noqa: F401 — raises RuntimeError, not ImportError, without a CUDA driver
    except Exception as exc:  # noqa: BLE001
        raise CpmKernelsMissingError(
            f"ChatGLM int4 on the GPU needs the cpm_kernels package, which could not be loaded "
            f"({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}).",
            'Install it with pip install cpm_kernels (or pip install -e ".[gpu-int4]"), '
            "or set Device to CPU.",
        ) from exc


def _resolve_device(device: str) -> str:
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            "Device is set to the GPU (CUDA), but no CUDA GPU is available.",
            "Set Device to Auto or CPU, or install a CUDA build of torch.",
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UnsupportedModelError(
            f"ChatGLM runs on the CPU or an NVIDIA GPU, not on {device!r}.", "Set Device to Auto or CPU."
        )
    return device


class StreamDiffer:
    """Turns stream_chat's "whole response so far" into append-only text chunks.

    ChatGLM may still rewrite the last character (a "," before a Chinese character becomes "，"; a
    half-decoded byte shows as U+FFFD), so a trailing character of that kind is held back until the
    next step. Should an already shown character change anyway, the shown text is kept and the
    stream continues after it.
    """

    def __init__(self) -> None:
        self.emitted = ""
        self.latest = ""

    def feed(self, response: str) -> str:
        self.latest = response
        safe = response.rstrip(_HOLD_BACK)
        if len(safe) <= len(self.emitted):
            return ""
        if not safe.startswith(self.emitted):
            log.debug("ChatGLM rewrote streamed text; continuing after the shown part")
        delta = safe[len(self.emitted) :]
        self.emitted += delta
        return delta

    def flush(self) -> str:
        """What is left of the final response (the held-back tail)."""
        tail = self.latest[len(self.emitted) :]
        self.emitted += tail
        return tail


def _cancel_criteria(event: threading.Event, counter: list[int]) -> Any:
    """A StoppingCriteria that ends stream_generate on the next step once ``event`` is set; counts steps."""
    import torch
    from transformers import StoppingCriteria

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            counter[0] += 1
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return _Cancel()


def split_messages(messages: Sequence[ChatMessage], variant: str) -> tuple[str, list[Any], str]:
    """(query, history in the version's own shape, system text)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    turns = [m for m in messages if m.role != "system"]
    if not turns or turns[-1].role != "user":
        raise GenerationError("The conversation must end with a question from the user.")
    query = turns[-1].content
    pairs: list[tuple[str, str]] = []
    pending: str | None = None
    for m in turns[:-1]:
        if m.role == "user":
            if pending is not None:
                pairs.append((pending, ""))
            pending = m.content
        else:
            pairs.append((pending or "", m.content))
            pending = None
    if pending is not None:
        pairs.append((pending, ""))
    if variant == "chatglm3":
        history: list[Any] = [{"role": "system", "content": system}] if system else []
        for q, a in pairs:
            history.append({"role": "user", "content": q})
            history.append({"role": "assistant", "metadata": "", "content": a})
        return query, history, system
    # v1/v2 have no system role: the instructions (and any retrieved sources) go before the first question
    if system:
        if pairs:
            pairs[0] = (f"{system}\n\n{pairs[0][0]}", pairs[0][1])
        else:
            query = f"{system}\n\n{query}"
    return query, list(pairs), system


def prompt_ids(tokenizer: Any, variant: str, messages: Sequence[ChatMessage]) -> list[int]:
    """The ids ChatGLM's own chat()/stream_chat() feed the model for ``messages`` (training matches them)."""
    query, history, _ = split_messages(messages, variant)
    tok = tokenizer
    if variant == "chatglm3":
        return [int(i) for i in tok.build_chat_input(query, history=history)["input_ids"][0]]
    if variant == "chatglm2":
        prompt = tok.build_prompt(query, history=history)
    elif history:
        prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
        prompt += f"[Round {len(history)}]\n问：{query}\n答："
    else:
        prompt = query
    return [int(i) for i in tok([prompt])["input_ids"][0]]


class ChatGLMChatModel:
    """One loaded ChatGLM model; use it from one thread at a time (the inference worker)."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, variant: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.variant = variant
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ prompt shapes

    def _split(self, messages: Sequence[ChatMessage]) -> tuple[str, list[Any], str]:
        return split_messages(messages, self.variant)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(prompt_ids(self.tokenizer, self.variant, messages))

    # ------------------------------------------------------------------ generation

    def _gen_kwargs(self, sampling: SamplingSettings) -> dict[str, Any]:
        if sampling.greedy:
            # warpers never change the argmax; neutral values keep generation_config validation quiet
            kw: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_p": 1.0}
        else:
            kw = {
                "do_sample": True,
                "temperature": float(sampling.temperature),
                "top_p": float(sampling.top_p),
                # 5.x leaves top_k unset where 4.x defaulted to 50: always say what we want (0 = off)
                "top_k": int(sampling.top_k),
            }
        if sampling.repetition_penalty != 1.0:
            from transformers import LogitsProcessorList

            from bubble_desktop.core.llm.penalty import generated_tokens_penalty

            # on the answer's own tokens only (stream_chat appends its InvalidScore processor to this list)
            kw["logits_processor"] = LogitsProcessorList(
                [generated_tokens_penalty(sampling.repetition_penalty)]
            )
        kw["max_new_tokens"] = int(sampling.max_new_tokens)
        # stream_chat's own max_length default (2048/8192) would cap prompt + answer below max_new_tokens
        kw["max_length"] = int(self.info.context_window)
        return kw

    def stream_raw(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
        counter: list[int] | None = None,
    ) -> Iterator[str]:
        """The model's own stream_chat: yields the whole response so far after every step."""
        import torch

        query, history, _ = self._split(messages)
        event = cancel if cancel is not None else threading.Event()
        steps = counter if counter is not None else [0]
        from transformers import StoppingCriteriaList

        kw = self._gen_kwargs(sampling)
        kw["stopping_criteria"] = StoppingCriteriaList([_cancel_criteria(event, steps)])
        if not sampling.greedy and sampling.seed >= 0:
            torch.manual_seed(sampling.seed)
        gen = self.model.stream_chat(self.tokenizer, query, history, **kw)
        try:
            for item in gen:
                yield item[0]
                if event.is_set():
                    break
        finally:
            gen.close()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        holder: list[Generation] = []  # the generator body runs only once iterated, after the append
        generation = Generation(self._chunks(holder, messages, sampling, cancel))
        holder.append(generation)
        return generation

    def _chunks(
        self,
        holder: list[Generation],
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        event = cancel if cancel is not None else threading.Event()
        start = time.perf_counter()
        ttft: float | None = None
        first_step_at: float | None = None
        counter = [0]
        prompt_tokens = 0
        finish: str = "stop"
        error: str | None = None
        with self._lock:
            try:
                prompt_tokens = self.count_tokens(messages)
                differ = StreamDiffer()
                for response in self.stream_raw(messages, sampling, event, counter):
                    if first_step_at is None:
                        first_step_at = time.perf_counter()
                    delta = differ.feed(response)
                    if delta:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        yield delta
                    if event.is_set():
                        break
                tail = differ.flush()
                if tail and not event.is_set():
                    if ttft is None:
                        ttft = time.perf_counter() - start
                    yield tail
                if event.is_set():
                    finish = "cancelled"
                elif counter[0] >= sampling.max_new_tokens:
                    finish = "length"
            except Exception as exc:  # noqa: BLE001 — reported in stats; the partial answer is kept
                if _is_oom(exc):
                    error = OutOfMemoryError("The model ran out of memory while answering.").message
                else:
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    error = f"ChatGLM failed while answering: {type(exc).__name__}: {first}"
                    log.exception("ChatGLM generation failed")
                finish = "error"
            finally:
                end = time.perf_counter()
                decode_s = end - (first_step_at or end)
                tokens = counter[0]
                holder[0].stats = GenerationStats(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=tokens,
                    ttft_s=ttft,
                    tokens_per_s=(tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
                    total_s=end - start,
                    finish_reason=finish,  # type: ignore[arg-type]
                    error=error,
                )

    def unload(self) -> None:
        with self._lock:
            self.model = None
            self.tokenizer = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def _silence_remote_loggers() -> None:
    """Hide warnings from the remote modules (loggers under ``transformers_modules``).

    ChatGLM calls ``logger.warn(msg, UserWarning)`` on every answer and ``logger.warning("...:", exc)``
    when cpm_kernels is absent: both have a stray argument, so logging prints a traceback to stderr.
    """
    logging.getLogger("transformers_modules").setLevel(logging.ERROR)


def compat_classes(folder: Path) -> tuple[Any, Any, Any]:
    """The (config, tokenizer, model) classes of a ChatGLM folder's own code, made to run here."""
    from bubble_desktop.core.llm.chatglm.compat import resolve_compat_classes

    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    try:
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        tok_ref = tok_cfg.get("auto_map", {}).get("AutoTokenizer")
        tok_ref = tok_ref[0] if isinstance(tok_ref, list) else tok_ref
    except (OSError, ValueError):
        tok_ref = cfg.get("auto_map", {}).get("AutoTokenizer")
        tok_ref = tok_ref[0] if isinstance(tok_ref, list) else tok_ref
    return resolve_compat_classes(str(folder), cfg["auto_map"], tok_ref)


def _apply_adapter(model: Any, adapter: Adapter, half: bool, bits: int) -> Any:
    """The model with its P-tuning v2 prefix or its LoRA adapter (merged unless the weights are int4/int8)."""
    if adapter.kind == "ptuning":
        load_prefix_encoder(model, adapter, half=half)
        return model
    return apply_lora(model, str(adapter.folder), merge=not bits)


def load_remote_code_model(
    request: LoadRequest, progress: ProgressCallback | None = None
) -> ChatGLMChatModel:
    """Load a ChatGLM folder (v1, int4, v2, v3) with its own code; asks for consent first.

    Raises RemoteCodeConsentRequired unless ``request.trust_remote_code`` or the folder (with its
    current ``.py`` files) is already trusted; a given ``trust_remote_code`` is remembered.
    """
    from bubble_desktop.core.llm.consent import ConsentStore

    def report(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    folder = Path(request.path).expanduser()
    if not folder.is_dir():
        from bubble_desktop.core.llm.locate import resolve_model_path

        folder = resolve_model_path(request.path, allow_download=False)
    folder = folder.resolve()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"{str(folder)!r} is not a model folder: it has no config.json.")
    if not is_chatglm_folder(folder):
        raise UnsupportedModelError(
            "This model ships its own Python code; Bubble runs such code only for ChatGLM-6B, "
            "ChatGLM-6B-int4, ChatGLM2-6B and ChatGLM3-6B.",
            "Pick a model that transformers supports natively (no auto_map in config.json).",
        )
    consent = ConsentStore()
    if request.trust_remote_code:
        consent.trust(folder)
    elif not consent.is_trusted(folder):
        raise RemoteCodeConsentRequired(
            f"The model in {str(folder)!r} ships its own Python code, which runs with your user's rights."
        )

    adapter = None
    if request.lora_path:  # a peft LoRA adapter or a P-tuning v2 checkpoint: checked before loading
        adapter = inspect_adapter(request.lora_path)
    variant = detect_variant(folder)
    bits = quantization_bits(folder)
    device = _resolve_device(request.device)
    if bits:
        if device == "cpu":
            check_c_compiler()
        else:
            check_cpm_kernels()

    report(0.05, "Loading the model's own code")
    _silence_remote_loggers()
    from bubble_desktop.core.llm.chatglm.compat import (
        TESTED_TRANSFORMERS,
        retie_output_embeddings,
        transformers_is_tested,
    )

    if not transformers_is_tested():
        import transformers

        log.warning(
            "ChatGLM compat layer verified on transformers %s.%s, running on %s: answers may differ",
            *TESTED_TRANSFORMERS,
            transformers.__version__,
        )

    # the remote code print()s progress ("Compiling kernels", "Applying quantization ..."): keep stdout
    # clean for bubble-cli ask --json by sending it to stderr while that code runs
    redirect = contextlib.redirect_stdout(sys.stderr)
    try:
        redirect.__enter__()
        config_cls, tokenizer_cls, model_cls = compat_classes(folder)
        report(0.15, "Loading the tokenizer")
        ptuning: dict[str, Any] = {}
        if adapter is not None and adapter.kind == "ptuning":  # THUDM's README: the prefix in the config
            ptuning = {"pre_seq_len": adapter.pre_seq_len, "prefix_projection": adapter.prefix_projection}
        config = config_cls.from_pretrained(str(folder), **ptuning)
        tokenizer = tokenizer_cls.from_pretrained(str(folder))
        report(0.3, "Loading the weights")
        model = model_cls.from_pretrained(str(folder), config=config)
        retie_output_embeddings(model)
        report(0.85, f"Moving the model to {device}")
        # the weights ship as fp16: CPUs want float32, GPUs half precision
        model = model.float() if device == "cpu" else model.half().to(device)
        if adapter is not None:
            report(0.95, "Applying the adapter")
            model = _apply_adapter(model, adapter, half=device != "cpu", bits=bits)
        model.eval()
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 — anything from foreign code becomes one clear message
        if _is_oom(exc):
            raise OutOfMemoryError("Not enough memory to load this ChatGLM model.") from exc
        first = str(exc).splitlines()[0] if str(exc) else ""
        if bits and device == "cpu" and isinstance(exc, AssertionError):
            compile_error = kernel_compile_error(folder)
            if compile_error:
                raise KernelCompileError(
                    f"ChatGLM int4 on the CPU compiles a small C kernel while loading, and gcc could not "
                    f"compile it: {compile_error}"
                ) from exc
        if "protobuf" in first.lower():
            raise ModelError(
                f"Loading the ChatGLM tokenizer needs protobuf: {first}", "pip install protobuf sentencepiece"
            ) from exc
        import transformers

        raise ModelError(
            f"The ChatGLM model could not be loaded on transformers {transformers.__version__}: "
            f"{type(exc).__name__}: {first}",
            "Check that the folder is a complete ChatGLM-6B/-int4, ChatGLM2-6B or ChatGLM3-6B download.",
        ) from exc
    finally:
        redirect.__exit__(None, None, None)

    if variant == "chatglm":
        window = int(getattr(config, "max_sequence_length", 2048) or 2048)
    else:
        window = int(getattr(config, "seq_length", 8192) or 8192)
    if request.context_window:
        window = min(window, int(request.context_window))
    arch = variant + ("-int4" if bits == 4 else "-int8" if bits == 8 else "")
    info = ModelInfo(
        name=folder.name,
        path=str(folder),
        arch=arch,
        device="cuda:0" if device == "cuda" else device,
        dtype="float32" if device == "cpu" else "float16",
        context_window=window,
        # every other sampling setting is mapped onto stream_chat's keywords; v1/v2 have no system role,
        # so the system prompt is put before the first question instead
        ignored_settings=("min_p",),  # stream_chat has no min_p
        remote_code=True,
        lora=str(adapter.folder) if adapter is not None else None,
    )
    report(1.0, "Ready")
    return ChatGLMChatModel(model, tokenizer, info, variant)
