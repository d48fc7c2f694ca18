"""LoRA fine-tuning with peft on a transformers model folder, as a long job in a child process.

The parent (GUI or CLI) holds a :class:`TrainingJob`: ``start()`` spawns the child
(``multiprocessing`` *spawn*, like core/kb/store.py), ``poll()`` drains its events without blocking
(a GUI timer calls it), ``events()`` iterates them until the job ends (the CLI), ``cancel()`` asks the
child to save a checkpoint and stop after the current step, ``kill()`` ends it at once.

Events are plain dicts ``{"event": KIND, ...}``:

- ``status``      ``{"message"}`` — a phase (loading data, loading the model ...)
- ``preview``     the :class:`DataPreview` of the data (counts, token lengths, problems)
- ``estimate``    ``{"need_mb", "available_mb", "parts"}`` — the memory estimate made before loading
- ``start``       ``{"total_steps", "train_examples", "val_examples", "resumed_from", "settings"}``
- ``step``        ``{"step", "total_steps", "epoch", "loss", "lr", "tokens_per_s", "eta_s", "elapsed_s"}``
- ``eval``        ``{"step", "val_loss"}``
- ``checkpoint``  ``{"step", "path"}``
- ``done``        ``{"adapter", "card"}`` — the adapter folder ``<models>/lora/<name>`` and its card
- ``cancelled``   ``{"step", "checkpoint"}`` — stopped on request; ``resume=True`` continues from there
- ``error``       ``{"message", "hint", "error"}`` — a UserFacingError (or an unexpected one) in the child

Work in progress lives in ``<models>/lora/.partial/<name>/`` (job.json with the resolved settings,
checkpoints/step-NNNNNN with the adapter weights, optimizer, scheduler and step); a finished adapter
is renamed into ``<models>/lora/<name>/`` with ``adapter_card.json`` and the partial folder removed.
The data order is a pure function of (seed, epoch), so a resumed job sees the same batches an
uninterrupted one would have.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import re
import shutil
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import TrainingError, UserFacingError

log = logging.getLogger(__name__)

Event = dict[str, Any]
Emit = Callable[[Event], None]
FINAL_EVENTS = ("done", "cancelled", "error")
_NAME = re.compile(r"^[\w][\w.\- ]{0,79}$")
MB = 1024 * 1024


@dataclass
class LoraSettings:
    """What to train. Zero / empty values mean "pick by hardware and data" (see :func:`resolve_settings`)."""

    model: str
    data: list[str]
    name: str
    epochs: float = 0.0
    lr: float = 0.0
    rank: int = 0
    alpha: int = 0
    dropout: float = 0.05
    max_len: int = 0
    batch_size: int = 1
    grad_accum: int = 0
    max_steps: int = 0  # 0 = epochs × examples / (batch × accumulation)
    val_fraction: float = 0.1
    save_every: int = 0  # checkpoint every N optimizer steps; 0 = about 10 per job
    eval_every: int = 0  # validation loss every N steps; 0 = at each checkpoint
    warmup_steps: int = -1  # -1 = 3 % of the steps (at most 20)
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    gradient_checkpointing: str = "auto"  # auto (GPU, or when memory is tight) / on / off
    quantization: str = "auto"  # QLoRA: 4bit (NF4 base weights, CUDA + bitsandbytes) / none / auto
    target_modules: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    skip_bad_rows: bool = False
    system_prompt: str = ""  # given to examples without their own, as the chat gives it at inference
    memory_limit_mb: int = (
        0  # 0 = the memory free now; set it to budget less (or, in tests, to force a refusal)
    )
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# ------------------------------------------------------------------------------------------- paths


def lora_root() -> Path:
    from bubble_desktop.core.paths import Paths

    return Paths.default().models_dir / "lora"


def adapter_dir(name: str) -> Path:
    return lora_root() / name


def partial_dir(name: str) -> Path:
    return lora_root() / ".partial" / name


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name) or name in (".", ".."):
        raise TrainingError(
            f"{name!r} cannot be an adapter name.",
            "Use letters, digits, spaces, dots, dashes or underscores (up to 80 characters).",
        )
    return name


def latest_checkpoint(name: str) -> Path | None:
    """The newest complete checkpoint of a half-finished job (None when there is none)."""
    folder = partial_dir(name) / "checkpoints"
    if not folder.is_dir():
        return None
    done = sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and re.fullmatch(r"step-\d+", p.name) and (p / "state.json").is_file()
    )
    return done[-1] if done else None


def list_adapters() -> list[dict[str, Any]]:
    """Finished adapters under ``<models>/lora`` with their cards (for "use this adapter")."""
    root = lora_root()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and (p / "adapter_config.json").is_file():
            card: dict[str, Any] = {}
            try:
                card = json.loads((p / "adapter_card.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
            out.append({"name": p.name, "path": str(p), "card": card})
    return out


# ------------------------------------------------------------------------------- model inspection


def _safetensors_params(folder: Path) -> int:
    """Parameter count from the safetensors headers (no weights read)."""
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key != "__metadata__":
                total += math.prod(meta.get("shape", [])) if meta.get("shape") else 1
    return total


def count_parameters(folder: Path) -> int:
    n = _safetensors_params(folder)
    if n:
        return n
    size = sum(f.stat().st_size for f in folder.glob("*.bin"))
    return size // 2 if size else 0  # .bin checkpoints are mostly fp16


@dataclass(frozen=True)
class MemoryEstimate:
    need_bytes: int
    available_bytes: int
    device: str
    parts: dict[str, int]

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.available_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "need_mb": round(self.need_bytes / MB),
            "available_mb": round(self.available_bytes / MB),
            "device": self.device,
            "fits": self.fits,
            "parts": {k: round(v / MB, 1) for k, v in self.parts.items()},
        }


def available_memory(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def estimate_memory(
    config: dict[str, Any],
    n_params: int,
    settings: LoraSettings,
    device: str,
    bytes_per_param: float,
    checkpointing: bool,
    weight_bytes_per_param: float = 0.0,
) -> MemoryEstimate:
    """Peak memory of one training step: weights + adapter (with grads and Adam state) + activations
    (Korthikanti et al.'s per-layer formula, or one hidden state per layer with checkpointing) + logits."""
    hidden = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 1024)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers") or 12)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 16)
    vocab = int(config.get("vocab_size") or 32000)
    tokens = max(1, settings.batch_size) * max(1, settings.max_len)
    seq = max(1, settings.max_len)
    act_scale = bytes_per_param / 2
    weight_bytes = weight_bytes_per_param or bytes_per_param  # 4-bit NF4 (QLoRA): ~0.55 bytes
    full_layer = tokens * (34 * hidden + 5 * heads * seq) * act_scale
    activations = (
        layers * tokens * hidden * bytes_per_param + full_layer if checkpointing else layers * full_layer
    )
    n_targets = max(1, len(settings.target_modules) or 7)  # q/k/v/o + 3 MLP projections
    lora_params = layers * n_targets * 2 * settings.rank * hidden
    parts = {
        "weights": int(n_params * weight_bytes),
        "adapter_and_optimizer": lora_params * 16,  # fp32 weight + grad + 2 Adam moments
        "activations": int(activations),
        "logits": tokens * vocab * 4 * 3,
        "runtime": 400 * MB if not device.startswith("cuda") else 300 * MB,
    }
    need = int(sum(parts.values()) * 1.15)
    available = settings.memory_limit_mb * MB if settings.memory_limit_mb > 0 else available_memory(device)
    return MemoryEstimate(need, available, device, parts)


def find_target_modules(model: Any) -> list[str]:
    """The linear layers LoRA adapts, by architecture: attention (+ MLP) projections of LLaMA-style
    models, ``query_key_value``/``dense*`` of ChatGLM/BLOOM/Falcon, ``c_attn``/``c_proj``/``c_fc`` of
    GPT-2; otherwise every linear layer but the output head."""
    leaf_names: set[str] = set()
    for full, module in model.named_modules():
        kind = type(module).__name__
        if kind in ("Linear", "Conv1D", "Linear8bitLt", "Linear4bit"):
            leaf_names.add(full.rsplit(".", 1)[-1])
    for group in (
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
        ("c_attn", "c_proj", "c_fc"),
        ("q", "k", "v", "o", "wi", "wo", "wi_0", "wi_1"),
    ):
        hits: list[str] = [n for n in group if n in leaf_names]
        if hits and (hits[0] == group[0] or len(hits) >= 2):
            return hits
    skip = {"lm_head", "output_layer", "embed_out", "score", "classifier"}
    found = sorted(leaf_names - skip)
    if not found:
        raise TrainingError("This model has no linear layers LoRA knows how to adapt.")
    return found


# ---------------------------------------------------------------------------------------- defaults


def resolve_settings(
    settings: LoraSettings, device: str, n_examples: int, context_window: int, free_bytes: int = 0
) -> LoraSettings:
    """Fill in the zeros: rank 16 on a GPU with ≥ 12 GB free, else 8; alpha 2 × rank; lr 2e-4; epochs
    3 (small data) to 1 (large); max length 1024 on a GPU, 512 on the CPU (within the model's context);
    accumulation for an effective batch of 16 (GPU) or 8 (CPU), not more than the data allows."""
    s = LoraSettings.from_dict(settings.to_dict())
    gpu = device.startswith("cuda")
    if s.rank <= 0:
        s.rank = 16 if gpu and free_bytes >= 12 * 1024 * MB else 8
    if s.alpha <= 0:
        s.alpha = 2 * s.rank
    if s.lr <= 0:
        s.lr = 2e-4
    if s.epochs <= 0:
        s.epochs = 3.0 if n_examples < 1000 else 2.0 if n_examples < 10000 else 1.0
    if s.max_len <= 0:
        s.max_len = 1024 if gpu else 512
    if context_window > 0:
        s.max_len = min(s.max_len, context_window)
    s.batch_size = max(1, s.batch_size)
    if s.grad_accum <= 0:
        target = 16 if gpu else 8
        s.grad_accum = max(1, min(target // s.batch_size, n_examples // (4 * s.batch_size) or 1))
    return s


NF4_BYTES_PER_PARAM = 0.55  # 4-bit NF4 weights with double-quantized scales, plus the fp16 norms


def pick_quantization(
    setting: str, device: str, bnb_problem: tuple[str, str] | None, fits_unquantized: bool
) -> bool:
    """Whether the base weights load in 4 bits (QLoRA). ``bnb_problem`` is why bitsandbytes cannot
    run on ``device`` (None when it can: a CUDA GPU, or the CPU with bitsandbytes' CPU backend).
    "4bit" insists (and says what is missing), "none" never, "auto" when the full-precision
    weights would not fit and 4-bit ones can run here."""
    if setting == "4bit":
        if bnb_problem is not None:
            raise TrainingError(*bnb_problem)
        return True
    if setting in ("none", ""):
        return False
    if setting != "auto":
        raise TrainingError(f"Unknown quantization {setting!r}.", "Use auto, 4bit or none.")
    return bnb_problem is None and not fits_unquantized


@dataclass(frozen=True)
class JobPlan:
    """What a job will run with on this machine: settings with the zeros filled in, device,
    dtype, gradient checkpointing, 4-bit base weights (QLoRA) or not, and the memory estimate
    (the GUI shows it before starting)."""

    settings: LoraSettings
    device: str
    dtype: Any
    checkpointing: bool
    estimate: MemoryEstimate
    qlora: bool = False


def context_window(raw_config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "seq_length"):
        if isinstance(raw_config.get(key), int):
            return int(raw_config[key])
    return 0


def plan(settings: LoraSettings, folder: Path, raw_config: dict[str, Any], n_examples: int) -> JobPlan:
    """Resolve the defaults for this hardware and estimate the peak memory (imports torch; reads
    only config.json and the safetensors headers). Gradient checkpointing "auto" is on on a GPU, and
    on the CPU when the estimate without it does not fit."""
    import torch

    from bubble_desktop.core.llm.loader import resolve_device, resolve_dtype

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    bytes_per = 2 if dtype in (torch.float16, torch.bfloat16) else 4
    free = available_memory(device)
    s = resolve_settings(settings, device, n_examples, context_window(raw_config), free)
    n_params = count_parameters(folder)
    want_ckpt = s.gradient_checkpointing == "on" or (s.gradient_checkpointing == "auto" and device != "cpu")
    est = estimate_memory(raw_config, n_params, s, device, bytes_per, want_ckpt)
    if not est.fits and s.gradient_checkpointing == "auto" and not want_ckpt:
        want_ckpt = True  # checkpointing trades ~30 % speed for most of the activation memory
        est = estimate_memory(raw_config, n_params, s, device, bytes_per, want_ckpt)
    from bubble_desktop.core.llm.loader import bitsandbytes_problem

    qlora = pick_quantization(
        s.quantization, device, bitsandbytes_problem(device, "4bit", training=True), est.fits
    )
    if qlora:
        if s.gradient_checkpointing == "auto":
            want_ckpt = True  # QLoRA is for tight memory: checkpointing too, as in the QLoRA paper
        est = estimate_memory(raw_config, n_params, s, device, bytes_per, want_ckpt, NF4_BYTES_PER_PARAM)
    return JobPlan(s, device, dtype, want_ckpt, est, qlora)


@dataclass(frozen=True)
class JobCheck:
    """What Start would find, without starting: the rows read, their problems, the preview (token
    lengths with the base model's chat template) and the plan; ``model_error`` when the base model
    cannot be used (then ``preview`` and ``plan`` are None)."""

    examples: int
    problems: list[Any]
    preview: Any  # DataPreview | None
    plan: JobPlan | None
    model_error: str = ""
    model_hint: str = ""


def check_job(settings: LoraSettings) -> JobCheck:
    """Read the data and the base model's tokenizer as the job will, and plan it (seconds: the
    tokenizer and torch are loaded; the weights are not). For the GUI's preview before Start."""
    from bubble_desktop.core.train.data import load_files, preview

    ds = load_files(settings.data)
    if settings.system_prompt.strip():
        from dataclasses import replace

        system = settings.system_prompt.strip()
        ds.examples = [e if e.system else replace(e, system=system) for e in ds.examples]
    try:
        from bubble_desktop.core.llm.loader import read_config
        from bubble_desktop.core.llm.locate import resolve_model_path
        from bubble_desktop.core.native import heavy_imports

        folder = resolve_model_path(settings.model)
        raw_config = read_config(folder)
        with heavy_imports():
            from transformers import AutoTokenizer
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=settings.trust_remote_code
            )
        except Exception as exc:
            raise TrainingError(f"The tokenizer in {str(folder)!r} could not be loaded: {exc}") from exc
        usable = sum(1 for e in ds.examples if e.answer.strip())
        job_plan = plan(settings, folder, raw_config, usable)
    except UserFacingError as exc:
        return JobCheck(len(ds.examples), ds.problems, None, None, exc.message, exc.hint)
    pv = preview(ds.examples, tokenizer, job_plan.settings.max_len, ds.problems)
    return JobCheck(len(ds.examples), pv.problems, pv, job_plan)


# ---------------------------------------------------------------------------------------- the job


class TrainingJob:
    """A LoRA training run in a spawned child process; see the module docstring for the events."""

    def __init__(self, settings: LoraSettings, resume: bool = False, restart: bool = False) -> None:
        self.settings = settings
        self.resume = resume
        self.restart = restart
        self.final: Event | None = None
        self.last_step: Event | None = None
        self._proc: Any = None
        self._queue: Any = None
        self._cancel: Any = None

    def start(self) -> None:
        import multiprocessing

        check_name(self.settings.name)
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._cancel = ctx.Event()
        self._proc = ctx.Process(
            target=_child_main,
            args=(
                self.settings.to_dict(),
                self.resume,
                self.restart,
                self._queue,
                self._cancel,
                os.environ.get("BUBBLE_HOME", ""),
            ),
            name=f"bubble-train-{self.settings.name}",
            daemon=True,
        )
        self._proc.start()

    @property
    def pid(self) -> int | None:
        return int(self._proc.pid) if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive() and self.final is None

    def cancel(self) -> None:
        """Ask the child to checkpoint and stop after the current step (a ``cancelled`` event follows)."""
        if self._cancel is not None:
            self._cancel.set()

    def kill(self) -> None:
        """End the child now (the last periodic checkpoint stays resumable)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def poll(self, timeout: float = 0.0) -> list[Event]:
        """Events that arrived; waits up to ``timeout`` s for the first one. Never blocks longer."""
        out: list[Event] = []
        if self._queue is None:
            return out
        try:
            out.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
            while True:
                out.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        for ev in out:
            self._note(ev)
        if not out and self.final is None and self._proc is not None and not self._proc.is_alive():
            self._proc.join()
            ev = {
                "event": "error",
                "error": "TrainingError",
                "message": f"The training process stopped unexpectedly (exit code {self._proc.exitcode}).",
                "hint": "Start it again with resume: it continues from the last checkpoint.",
            }
            self._note(ev)
            out.append(ev)
        return out

    def _note(self, ev: Event) -> None:
        if ev.get("event") in FINAL_EVENTS:
            self.final = ev
        elif ev.get("event") == "step":
            self.last_step = ev

    def events(self, poll_s: float = 0.5) -> Iterator[Event]:
        """All events until the job ends (its last event is done, cancelled or error)."""
        while True:
            yield from self.poll(poll_s)
            if self.final is not None:
                break
        self.wait(30)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._proc is None:
            return None
        self._proc.join(timeout)
        return self._proc.exitcode  # type: ignore[no-any-return]

    def close(self) -> None:
        self.kill()
        if self._queue is not None:
            self._queue.close()
            self._queue.join_thread()


def run_job(
    settings: LoraSettings, resume: bool = False, restart: bool = False, on_event: Emit | None = None
) -> Event:
    """Run a job in a child process to the end; ``on_event`` sees every event. Returns the final one."""
    job = TrainingJob(settings, resume=resume, restart=restart)
    job.start()
    try:
        for ev in job.events():
            if on_event is not None:
                on_event(ev)
    finally:
        job.close()
    assert job.final is not None
    return job.final


def _child_main(
    settings: dict[str, Any], resume: bool, restart: bool, q: Any, cancel: Any, home: str
) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    if home:
        os.environ["BUBBLE_HOME"] = home
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # progress goes through the events
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices, not for users
    import multiprocessing

    parent = multiprocessing.parent_process()

    def should_stop() -> str:
        if cancel.is_set():
            return "cancel"
        if parent is not None and not parent.is_alive():
            return "parent"
        return ""

    try:
        train(LoraSettings.from_dict(settings), q.put, should_stop, resume=resume, restart=restart)
    except UserFacingError as exc:
        q.put({"event": "error", **exc.to_dict()})
    except BaseException as exc:  # noqa: BLE001 - the child's boundary: report, then exit
        log.exception("training failed")
        q.put(
            {
                "event": "error",
                "error": type(exc).__name__,
                "message": f"Training failed: {exc}",
                "hint": "Details are in the log; resume continues from the last checkpoint.",
            }
        )
    finally:
        q.close()
        if parent is not None and not parent.is_alive():
            q.cancel_join_thread()  # nobody reads any more: a full pipe would hang the exit
        else:
            q.join_thread()


# -------------------------------------------------------------------------------------- training


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _prepare_work(s: LoraSettings, resume: bool, restart: bool) -> tuple[LoraSettings, Path, Path | None]:
    """The partial folder (job.json) and the checkpoint to resume from."""
    name = check_name(s.name)
    out = adapter_dir(name)
    work = partial_dir(name)
    if restart and work.exists():
        shutil.rmtree(work)
    if (out / "adapter_config.json").exists() and not resume:
        raise TrainingError(
            f"An adapter named {name!r} already exists ({out}).",
            "Choose another name with --out, or delete that folder.",
        )
    ckpt = latest_checkpoint(name)
    job_file = work / "job.json"
    if resume:
        if not job_file.is_file():
            raise TrainingError(
                f"There is no unfinished training named {name!r} to resume.", "Start it without resume."
            )
        saved = json.loads(job_file.read_text(encoding="utf-8"))
        s = LoraSettings.from_dict(saved["settings"])  # the same data, model and settings as before
        return s, work, ckpt
    if job_file.exists():
        raise TrainingError(
            f"An unfinished training named {name!r} exists (last checkpoint: "
            f"{ckpt.name if ckpt else 'none'}).",
            "Resume it (--resume), start over (--restart), or choose another name.",
        )
    return s, work, None


def train(
    settings: LoraSettings,
    emit: Emit,
    should_stop: Callable[[], str] = lambda: "",
    resume: bool = False,
    restart: bool = False,
) -> Event:
    """The whole job in this process (the child calls it; benches may too). Returns the final event."""
    s, work, ckpt = _prepare_work(settings, resume, restart)
    emit({"event": "status", "message": "Reading the training data"})
    from bubble_desktop.core.train.data import encode_example, load_files, preview

    ds = load_files(s.data)
    if s.skip_bad_rows:
        ds.problems = [p for p in ds.problems if p.level != "error"] + [
            type(p)(p.file, p.row, p.message + " (skipped)", "warning") for p in ds.errors
        ]
        if not any(e.answer.strip() for e in ds.examples):
            ds.raise_for_errors()
    else:
        ds.raise_for_errors()
    from bubble_desktop.core.llm.loader import read_config
    from bubble_desktop.core.llm.locate import resolve_model_path

    folder = resolve_model_path(s.model)
    raw_config = read_config(folder)
    emit({"event": "status", "message": "Loading the tokenizer"})
    from bubble_desktop.core.llm.loader import quiet_bitsandbytes
    from bubble_desktop.core.native import heavy_imports

    quiet_bitsandbytes()  # peft imports it when installed
    with heavy_imports():
        import torch
        from transformers import AutoTokenizer

    if s.threads > 0:
        torch.set_num_threads(s.threads)
    try:
        glm = _chatglm_classes(folder, raw_config, s.trust_remote_code)
        if glm is not None:  # ChatGLM's own code, through the compat layer the chat uses
            tokenizer = glm[1].from_pretrained(str(folder))
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=s.trust_remote_code
            )
    except UserFacingError:
        raise
    except Exception as exc:
        raise TrainingError(f"The tokenizer in {str(folder)!r} could not be loaded: {exc}") from exc
    if s.system_prompt.strip():
        from dataclasses import replace

        ds.examples = [e if e.system else replace(e, system=s.system_prompt.strip()) for e in ds.examples]
    examples = [e for e in ds.examples if e.answer.strip()]
    job_plan = plan(s, folder, raw_config, len(examples))
    s, device, dtype, est, want_ckpt, qlora = (
        job_plan.settings,
        job_plan.device,
        job_plan.dtype,
        job_plan.estimate,
        job_plan.checkpointing,
        job_plan.qlora,
    )
    pv = preview(ds.examples, tokenizer, s.max_len, ds.problems)
    emit({"event": "preview", **pv.to_dict()})
    emit({"event": "estimate", **est.to_dict()})
    if not est.fits:
        raise TrainingError(
            f"Training would need about {est.need_bytes / MB:,.0f} MB on {device}, but only "
            f"{est.available_bytes / MB:,.0f} MB is free (weights {est.parts['weights'] / MB:,.0f} MB, "
            f"activations {est.parts['activations'] / MB:,.0f} MB at max length {s.max_len}).",
            "Lower the maximum length, use a smaller model, close other programs, or train on a GPU.",
        )

    # split: 10 % (at least one example) for the validation loss, the same split on resume
    order = list(range(len(examples)))
    random.Random(s.seed).shuffle(order)
    if len(order) == 1:
        val_idx, train_idx = order, order
    else:
        n_val = max(1, round(len(order) * s.val_fraction)) if s.val_fraction > 0 else 0
        n_val = min(n_val, len(order) - 1)
        val_idx, train_idx = order[:n_val], order[n_val:]
    prompt_ids_of = None
    if glm is not None:  # ChatGLM builds its prompts itself (chat/stream_chat): train on those
        from functools import partial

        from bubble_desktop.core.llm.chatglm import detect_variant
        from bubble_desktop.core.llm.chatglm.model import prompt_ids

        prompt_ids_of = partial(prompt_ids, tokenizer, detect_variant(folder))
    encoded = [encode_example(tokenizer, e, s.max_len, prompt_ids_of) for e in examples]
    train_set = [encoded[i] for i in train_idx]
    val_set = [encoded[i] for i in val_idx]
    micro_per_step = s.grad_accum
    steps_per_epoch = max(1, math.ceil(len(train_set) / (s.batch_size * micro_per_step)))
    total_steps = s.max_steps if s.max_steps > 0 else max(1, math.ceil(s.epochs * steps_per_epoch))
    save_every = s.save_every if s.save_every > 0 else max(1, total_steps // 10)
    eval_every = s.eval_every if s.eval_every > 0 else save_every
    warmup = s.warmup_steps if s.warmup_steps >= 0 else min(20, total_steps * 3 // 100)

    work.mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_json(
            work / "job.json",
            {"settings": s.to_dict(), "model_folder": str(folder), "created_at": time.time()},
        )

    emit({"event": "status", "message": f"Loading the model on {device}"})
    model = _load_model(folder, raw_config, dtype, device, s.trust_remote_code, qlora)
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    targets = s.target_modules or find_target_modules(model)
    s.target_modules = targets
    if qlora:  # fp32 norms and output head, input grads for checkpointing through frozen 4-bit layers
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]  # unannotated in peft
            model,
            use_gradient_checkpointing=want_ckpt,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        model.config.use_cache = False
        keep_4bit_weights_trainable(model)
    elif want_ckpt and getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    else:
        want_ckpt = False
    torch.manual_seed(s.seed)
    lcfg = LoraConfig(
        r=s.rank,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=targets,
        task_type=TaskType.CAUSAL_LM,
        bias="none",
    )
    model = get_peft_model(model, lcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)  # type: ignore[no-untyped-call]
    step = 0
    history: dict[str, Any] = {"loss": [], "val_loss": [], "tokens": 0, "elapsed_s": 0.0}
    if ckpt is not None:
        set_peft_model_state_dict(model, load_peft_weights(str(ckpt), device=device))
        trainer = torch.load(ckpt / "trainer_state.pt", map_location=device, weights_only=False)
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        torch.set_rng_state(trainer["torch_rng"])
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        step = int(state["step"])
        history = state["history"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    emit(
        {
            "event": "start",
            "total_steps": total_steps,
            "train_examples": len(train_set),
            "val_examples": len(val_set),
            "resumed_from": step,
            "device": device,
            "dtype": str(dtype).removeprefix("torch."),
            "gradient_checkpointing": want_ckpt,
            "qlora": qlora,
            "target_modules": targets,
            "trainable_params": sum(p.numel() for p in params),
            "settings": s.to_dict(),
        }
    )

    perms: dict[int, list[int]] = {}

    def batch_at(position: int) -> list[Any]:
        out = []
        for k in range(s.batch_size):
            p = position * s.batch_size + k
            epoch, within = divmod(p, len(train_set))
            if epoch not in perms:
                perm = list(range(len(train_set)))
                random.Random(s.seed * 1000003 + epoch).shuffle(perm)
                perms[epoch] = perm
            out.append(train_set[perms[epoch][within]])
        return out

    def tensors(batch: Sequence[Any]) -> tuple[Any, Any, Any, int]:
        n = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for r, e in enumerate(batch):
            ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[r, : len(e.labels)] = torch.tensor(e.labels)
            mask[r, : len(e.input_ids)] = 1
        return ids.to(device), labels.to(device), mask.to(device), int(mask.sum())

    def validate() -> float:
        model.eval()
        total = weight = 0.0
        with torch.no_grad():
            for e in val_set:
                ids, labels, mask, _ = tensors([e])
                n_ans = sum(1 for x in e.labels[1:] if x != -100)
                if n_ans == 0:
                    continue
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                total += float(loss) * n_ans
                weight += n_ans
        model.train()
        return total / weight if weight else float("nan")

    def save_checkpoint(at: int) -> Path:
        root = work / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{at:06d}"
        tmp = root / f"step-{at:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            tmp / "trainer_state.pt",
        )
        _write_json(tmp / "state.json", {"step": at, "history": history, "total_steps": total_steps})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted(p for p in root.iterdir() if p.is_dir() and p != final)[:-1]:
            shutil.rmtree(old, ignore_errors=True)  # keep the newest two
        return final

    model.train()
    t_start = time.perf_counter()
    elapsed0 = float(history.get("elapsed_s", 0.0))
    rate_tokens = 0.0
    rate_time = 0.0
    step_in_run = 0
    while step < total_steps:
        t0 = time.perf_counter()
        loss_sum = 0.0
        n_tokens = 0
        for micro in range(micro_per_step):
            ids, labels, mask, n = tensors(batch_at(step * micro_per_step + micro))
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            (out.loss / micro_per_step).backward()
            loss_sum += float(out.loss.detach())
            n_tokens += n
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_in_run += 1
        dt = time.perf_counter() - t0
        rate_tokens = rate_tokens * 0.8 + n_tokens
        rate_time = rate_time * 0.8 + dt
        loss = loss_sum / micro_per_step
        history["loss"].append([step, round(loss, 5)])
        history["tokens"] = int(history.get("tokens", 0)) + n_tokens
        history["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
        sec_per_step = rate_time / ((1 - 0.8**step_in_run) / 0.2)  # the EMA, bias-corrected
        emit(
            {
                "event": "step",
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step * micro_per_step * s.batch_size / len(train_set), 3),
                "loss": loss,
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": rate_tokens / rate_time if rate_time > 0 else 0.0,
                "eta_s": sec_per_step * (total_steps - step),
                "elapsed_s": history["elapsed_s"],
                "step_tokens": n_tokens,
                "step_s": dt,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
        if val_set and (step % eval_every == 0 or step == total_steps):
            val = validate()
            history["val_loss"].append([step, round(val, 5)])
            emit({"event": "eval", "step": step, "val_loss": val})
        stop = should_stop()
        if stop and step < total_steps:
            path = save_checkpoint(step)
            ev = {"event": "cancelled", "step": step, "checkpoint": str(path), "reason": stop}
            emit(ev)
            return ev
        if step % save_every == 0 and step < total_steps:
            path = save_checkpoint(step)
            emit({"event": "checkpoint", "step": step, "path": str(path)})

    emit({"event": "status", "message": "Saving the adapter"})
    out_dir = adapter_dir(s.name)
    staging = work / "final"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    card = {
        "name": s.name,
        "kind": "lora",
        "base_model": {
            "path": str(folder),
            "name": folder.name,
            "model_type": raw_config.get("model_type", ""),
        },
        "data_files": ds.files,
        "examples": {"train": len(train_set), "validation": len(val_set)},
        "settings": s.to_dict(),
        "steps": step,
        "tokens": history.get("tokens", 0),
        "duration_s": round(float(history["elapsed_s"]), 2),
        "first_loss": history["loss"][0][1] if history["loss"] else None,
        "final_loss": history["loss"][-1][1] if history["loss"] else None,
        "final_val_loss": history["val_loss"][-1][1] if history["val_loss"] else None,
        "loss_history": history["loss"],
        "val_loss_history": history["val_loss"],
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "created_at": time.time(),
        "versions": _versions(),
    }
    _write_json(staging / "adapter_card.json", card)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    ev = {
        "event": "done",
        "adapter": str(out_dir),
        "card": {k: v for k, v in card.items() if not k.endswith("_history")},
        "peak_rss_mb": peak_rss_mb(),
    }
    emit(ev)
    return ev


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (0 where it cannot be read)."""
    from bubble_desktop.core.native import peak_rss_bytes

    return round(peak_rss_bytes() / MB, 1)


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "transformers", "peft"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except Exception:  # noqa: BLE001 - informational only
            pass
    return out


def _chatglm_classes(folder: Path, raw_config: dict[str, Any], trust_remote_code: bool) -> Any:
    """ChatGLM's (config, tokenizer, model) classes made to run on this transformers, else None."""
    if not (raw_config.get("auto_map") and trust_remote_code):
        return None
    from bubble_desktop.core.llm.chatglm import is_chatglm_folder

    if not is_chatglm_folder(folder):
        return None
    from bubble_desktop.core.llm.chatglm.model import compat_classes

    return compat_classes(folder)


def keep_4bit_weights_trainable(model: Any) -> int:
    """bitsandbytes' CPU backend repacks a 4-bit layer's weights in place for fast inference the first
    time it runs in eval mode without grad (on CPUs with AVX512-BF16), and the training path then
    gets no gradient through them: after the first validation pass the loss went from 3.8 to 17 on
    SmolLM2. Training keeps the plain layout; returns how many layers were switched."""
    n = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def _load_model(
    folder: Path,
    raw_config: dict[str, Any],
    dtype: Any,
    device: str,
    trust_remote_code: bool,
    qlora: bool = False,
) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # progress goes through our events, not tqdm on stderr

    if raw_config.get("auto_map") and not trust_remote_code:
        from bubble_desktop.core.errors import RemoteCodeConsentRequired

        raise RemoteCodeConsentRequired(
            f"{folder.name} ships its own Python code, which training has to run."
        )
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
    }
    if qlora:  # NF4 base weights placed on the device as they load (bitsandbytes cannot .to() them later)
        from bubble_desktop.core.llm.loader import _quantization_config, quantized_device_map

        kwargs["quantization_config"] = _quantization_config("4bit", dtype, device)
        kwargs["device_map"] = quantized_device_map(device)
    try:
        glm = _chatglm_classes(folder, raw_config, trust_remote_code)
        if glm is not None:
            from bubble_desktop.core.llm.chatglm.compat import retie_output_embeddings

            quantized = (
                {k: kwargs[k] for k in ("dtype", "quantization_config", "device_map")} if qlora else {}
            )
            config = glm[0].from_pretrained(str(folder))
            glm_model = glm[2].from_pretrained(str(folder), config=config, **quantized)
            retie_output_embeddings(glm_model)
            return glm_model if qlora else glm_model.to(dtype=dtype).to(device)
        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        except ValueError:
            if not trust_remote_code:
                raise
            model = AutoModel.from_pretrained(str(folder), **kwargs)  # ChatGLM maps only AutoModel
        return model if qlora else model.to(device)  # type: ignore[arg-type]
    except UserFacingError:
        raise
    except Exception as exc:
        from bubble_desktop.core.llm.loader import _is_oom

        if _is_oom(exc):
            raise TrainingError(
                f"Not enough memory to load {folder.name} for training on {device}.",
                "Use a smaller model or lower the maximum length.",
            ) from exc
        raise TrainingError(
            f"The model could not be loaded for training: {str(exc).splitlines()[0]}"
        ) from exc


def merge_adapter(base: str, adapter: str, out: str | Path, dtype: str = "auto") -> Path:
    """Fold a LoRA adapter into a copy of the base model (peft ``merge_and_unload``): a plain model
    folder that loads without the adapter. Runs in this process (a one-off, minutes at most)."""
    from bubble_desktop.core.llm.adapters import resolve_adapter_path
    from bubble_desktop.core.llm.loader import read_config, resolve_dtype
    from bubble_desktop.core.llm.locate import resolve_model_path

    folder = resolve_model_path(base)
    raw = read_config(folder)
    adapter_path = Path(resolve_adapter_path(adapter))
    if not (adapter_path / "adapter_config.json").is_file():
        raise TrainingError(f"{adapter!r} is not a LoRA adapter folder (no adapter_config.json).")
    target = Path(out).expanduser()
    if target.exists() and any(target.iterdir()):
        raise TrainingError(f"{str(target)!r} already exists and is not empty.", "Choose a new folder.")
    from peft import PeftModel
    from transformers import AutoTokenizer

    model = _load_model(folder, raw, resolve_dtype(dtype, "cpu"), "cpu", bool(raw.get("auto_map")))
    merged = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(str(staging))
    AutoTokenizer.from_pretrained(str(folder), local_files_only=True).save_pretrained(str(staging))
    card = adapter_path / "adapter_card.json"
    if card.is_file():
        shutil.copy(card, staging / "merged_from_adapter_card.json")
    if target.exists():
        target.rmdir()
    os.replace(staging, target)
    return target
