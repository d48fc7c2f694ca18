"""Load a chat model from a LoadRequest: validate the input, pick device and precision, apply LoRA.

Everything the user can get wrong (no folder, a folder that is not a model, an architecture
transformers cannot run, a hub id that is not downloaded, a GGUF file, CUDA out of memory) becomes
a :class:`UserFacingError` here, before or instead of a traceback. Hubs are never contacted unless
the request explicitly allows a download (``request.extra["allow_download"]``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, cast

from bubble_desktop.core.errors import (
    ModelError,
    ModelNotFoundError,
    OutOfMemoryError,
    UnsupportedModelError,
)
from bubble_desktop.core.llm.adapters import apply_lora, inspect_adapter, refuse_ptuning
from bubble_desktop.core.llm.base import ChatModel, LoadRequest, ModelInfo, ProgressCallback

# where a model path points; its own module, so chatglm/ can use it without importing the loader
from bubble_desktop.core.llm.locate import resolve_model_path
from bubble_desktop.core.native import heavy_imports
from bubble_desktop.core.settings import ModelSettings

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 2048


def from_settings(settings: ModelSettings, trust_remote_code: bool = False) -> LoadRequest:
    """The LoadRequest for the saved model settings plus the user's remote-code consent."""
    extra: dict[str, object] = {}
    if settings.backend == "openai":
        extra = {
            "backend": "openai",
            "endpoint_url": settings.endpoint_url,
            "endpoint_model": settings.endpoint_model,
            "endpoint_api_key": settings.endpoint_api_key,
        }
    threads = getattr(settings, "threads", 0)
    if threads:
        extra["threads"] = threads
    gpu_layers = getattr(settings, "gpu_layers", -1)
    if gpu_layers != -1:
        extra["gpu_layers"] = gpu_layers
    return LoadRequest(
        path=settings.path,
        device=settings.device,
        dtype=settings.dtype,
        quantization=settings.quantization,
        lora_path=settings.lora_path,
        context_window=settings.context_window,
        trust_remote_code=trust_remote_code,
        extra=extra,
    )


def _progress(cb: ProgressCallback | None, fraction: float, what: str) -> None:
    if cb is not None:
        cb(fraction, what)


def read_config(folder: Path) -> dict[str, Any]:
    """config.json of a model folder, with clear errors for the usual wrong picks."""
    if folder.is_file():
        if folder.suffix.lower() == ".gguf":
            raise ModelError(
                f"{folder.name} is a GGUF file; Bubble runs GGUF models after a one-time import.",
                (
                    "Import it first: bubble-cli models import-gguf "
                    f"{str(folder)!r} (or Import GGUF in the app)."
                ),
            )
        raise ModelNotFoundError(f"{str(folder)!r} is a file, not a model folder.")
    cfg = folder / "config.json"
    if not cfg.is_file():
        if (folder / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"{str(folder)!r} is a LoRA adapter, not a full model.",
                "Choose the base model as the model folder and this folder as the LoRA adapter.",
            )
        ggufs = sorted(folder.glob("*.gguf"))
        if ggufs:
            raise ModelError(
                f"{str(folder)!r} holds a GGUF file ({ggufs[0].name}) but no config.json.",
                f"Import it first: bubble-cli models import-gguf {str(ggufs[0])!r}.",
            )
        raise ModelNotFoundError(f"{str(folder)!r} is not a model folder: it has no config.json.")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"The model's config.json could not be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelNotFoundError("The model's config.json is not a JSON object.")
    return data


def _model_kind(config: Any) -> str:
    """'causal' or 'seq2seq' for a transformers config, else UnsupportedModelError."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    raise UnsupportedModelError(
        f"The model type {model_type!r} cannot generate text (it is not a causal or seq2seq language model)."
    )


def resolve_device(device: str) -> str:
    """auto → cuda, then mps, then cpu; a chosen device that is not there is an error."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device in ("", "auto"):
        return "cuda" if cuda else "mps" if mps else "cpu"
    if device.startswith("cuda") and not cuda:
        raise ModelError(
            "CUDA was chosen but no NVIDIA GPU is usable here.", "Set the device to Auto or CPU."
        )
    if device == "mps" and not mps:
        raise ModelError(
            "MPS was chosen but Apple's GPU backend is not available here.", "Set the device to Auto or CPU."
        )
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """auto → bfloat16 (or float16) on a GPU, float32 on the CPU."""
    import torch

    if dtype in ("", "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ModelError(f"Unknown precision {dtype!r}.", "Use auto, float32, float16 or bfloat16.")
    return table[dtype]


BNB_CPU_MIN_VERSION = (0, 48)  # bitsandbytes' CPU backend (4- and 8-bit layers on CPU tensors)


def bitsandbytes_version() -> tuple[int, int] | None:
    """The installed bitsandbytes' (major, minor), read from its metadata (nothing imported); None
    when it is not importable (a frozen bundle can carry its metadata without the package)."""
    import importlib.util
    import re
    from importlib.metadata import PackageNotFoundError, version

    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    try:
        found = re.findall(r"\d+", version("bitsandbytes"))
    except PackageNotFoundError:
        return None
    return (int(found[0]), int(found[1])) if len(found) >= 2 else (0, 0)


def bitsandbytes_problem(device: str, quantization: str, training: bool = False) -> tuple[str, str] | None:
    """Why bitsandbytes' 8-/4-bit weights cannot run on ``device`` for loading in ``quantization``
    (or QLoRA ``training``), as (message, hint); None when they can: on a CUDA GPU with any
    bitsandbytes, on the CPU with its CPU backend (0.48 and later)."""
    from bubble_desktop.core.i18n import N_

    found = bitsandbytes_version()
    if found is None:
        if training:
            return (
                N_("4-bit QLoRA training needs the bitsandbytes package."),
                N_("pip install bitsandbytes"),
            )
        return (N_(f"{quantization} loading needs the bitsandbytes package."), N_("pip install bitsandbytes"))
    if device.startswith("cuda") or (device == "cpu" and found >= BNB_CPU_MIN_VERSION):
        return None
    installed = f"{found[0]}.{found[1]}"
    if device == "cpu":
        hint = N_("pip install -U bitsandbytes")
        if training:
            return (
                N_(
                    "4-bit QLoRA training on the CPU needs bitsandbytes 0.48 or newer; "
                    f"{installed} is installed."
                ),
                hint,
            )
        return (
            N_(
                f"{quantization} loading on the CPU needs bitsandbytes 0.48 or newer; "
                f"{installed} is installed."
            ),
            hint,
        )
    hint = N_("Set the device to CPU, or set Quantization to none.")
    if training:
        return (N_(f"4-bit QLoRA training runs on an NVIDIA GPU or on the CPU, not on {device}."), hint)
    return (N_(f"{quantization} loading runs on an NVIDIA GPU or on the CPU, not on {device}."), hint)


def quiet_bitsandbytes() -> None:
    """bitsandbytes' CPU backend warns on import when the optional ``kernels`` package (which
    fetches code from the Hugging Face hub) is absent; it then uses its own kernels, which is what
    we want: nothing is fetched."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _quantization_config(quantization: str, dtype: Any, device: str) -> Any:
    if quantization in ("", "none"):
        return None
    if quantization not in ("8bit", "4bit"):
        raise ModelError(f"Unknown quantization {quantization!r}.", "Use none, 8bit or 4bit.")
    problem = bitsandbytes_problem(device, quantization)
    if problem is not None:
        raise ModelError(*problem)
    quiet_bitsandbytes()
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]  # unannotated
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # unannotated in transformers
        load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4"
    )


def quantized_device_map(device: str) -> dict[str, Any]:
    """Where bitsandbytes places the weights as they load (they cannot be moved with .to() later)."""
    return {"": 0 if device == "cuda" else device}


def context_window_of(config: Any, tokenizer: Any, override: int = 0) -> int:
    if override > 0:
        return override
    for name in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    tmax = getattr(tokenizer, "model_max_length", 0)
    if isinstance(tmax, int) and 0 < tmax < 1_000_000:
        return tmax
    return DEFAULT_CONTEXT_WINDOW


def load_model(request: LoadRequest, progress: ProgressCallback | None = None) -> ChatModel:
    """Load the model the request names; raises UserFacingError subclasses for anything the user can fix."""
    if request.extra.get("backend") == "openai":
        from bubble_desktop.core.llm.openai_backend import OpenAIChatModel

        _progress(progress, 0.0, "Connecting to the model server")
        model = OpenAIChatModel(
            str(request.extra.get("endpoint_url") or ""),
            str(request.extra.get("endpoint_model") or ""),
            str(request.extra.get("endpoint_api_key") or ""),
            context_window=request.context_window,
        )
        _progress(progress, 1.0, "Ready")
        return model
    gguf = _gguf_path(request.path)
    if gguf is not None:  # GGUF runs natively through llama.cpp, memory-mapped, no conversion
        from bubble_desktop.core.llm.llamacpp_backend import load_gguf

        return load_gguf(
            gguf,
            context_window=request.context_window,
            device=request.device,
            threads=int(str(request.extra.get("threads", 0) or 0)),
            gpu_layers=int(str(request.extra.get("gpu_layers", -1))),
            progress=progress,
        )
    allow_download = bool(request.extra.get("allow_download", False))
    _progress(progress, 0.0, "Checking the model folder")
    folder = resolve_model_path(request.path, allow_download=allow_download)
    raw_config = read_config(folder)
    _progress(progress, 0.02, "Loading the libraries")
    with heavy_imports():  # torch/transformers without stalling the GUI thread: core/native.py
        import torch  # noqa: F401
        import transformers.generation  # noqa: F401
        import transformers.modeling_utils  # noqa: F401
    if raw_config.get("auto_map"):
        try:
            from bubble_desktop.core.llm.chatglm import load_remote_code_model
        except ImportError as exc:
            raise UnsupportedModelError(
                "This model ships its own Python code, which this build of Bubble cannot run yet."
            ) from exc
        return load_remote_code_model(request, progress)
    model_type = raw_config.get("model_type")
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import (  # type: ignore[attr-defined]  # public, not re-exported
        CONFIG_MAPPING_NAMES,
    )

    if not model_type or model_type not in CONFIG_MAPPING_NAMES:
        raise UnsupportedModelError(
            f"The model type {model_type!r} in config.json is not one transformers {_tf_version()} knows."
        )
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    kind = _model_kind(config)
    return _load_transformers(request, folder, config, kind, progress)


def _gguf_path(path: str) -> str | None:
    """The GGUF file ``path`` names (a .gguf path, or a name registered with ``models add``), else None."""
    if not path or not path.strip():
        return None
    if path.lower().endswith(".gguf"):
        return str(Path(path).expanduser())
    if os.sep not in path and "/" not in path:
        from bubble_desktop.core.llm.gguf_models import resolve_registered

        return resolve_registered(path)
    return None


def _tf_version() -> str:
    import transformers

    return str(transformers.__version__)


def _load_transformers(
    request: LoadRequest, folder: Path, config: Any, kind: str, progress: ProgressCallback | None
) -> ChatModel:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bubble_desktop.core.llm.transformers_backend import TransformersChatModel

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # progress goes through our callback, not tqdm on stderr
    quiet_bitsandbytes()  # peft imports it when installed
    if request.lora_path:  # checked before the weights load: a wrong folder fails at once
        refuse_ptuning(inspect_adapter(request.lora_path), folder.name)
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    quant = _quantization_config(request.quantization, dtype, device)
    _progress(progress, 0.1, "Loading the tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelNotFoundError(
            f"The tokenizer in {str(folder)!r} could not be loaded: {_first_line(exc)}",
            (
                "The folder needs the tokenizer files (tokenizer.json "
                "or tokenizer.model + tokenizer_config.json)."
            ),
        ) from exc
    _progress(progress, 0.25, "Loading the weights")
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = quantized_device_map(device)
    try:
        model = cls.from_pretrained(str(folder), **kwargs)
        if quant is None:
            _progress(progress, 0.8, f"Moving the model to {device}")
            model = cast(Any, model).to(device)  # transformers types .to() for a PreTrainedModel self
    except Exception as exc:
        if _is_oom(exc):
            _free()
            raise OutOfMemoryError(f"Not enough memory to load this model on {device}.") from exc
        if isinstance(exc, OSError):
            raise ModelNotFoundError(
                f"The weights in {str(folder)!r} could not be loaded: {_first_line(exc)}"
            ) from exc
        raise ModelError(f"The model could not be loaded: {_first_line(exc)}") from exc
    lora = ""
    if request.lora_path:
        _progress(progress, 0.9, "Applying the LoRA adapter")
        model = apply_lora(model, request.lora_path, merge=quant is None)
        lora = str(Path(request.lora_path).expanduser())
    model.eval()
    real_device = str(next(model.parameters()).device)
    info = ModelInfo(
        name=folder.name,
        path=str(folder),
        arch=str(getattr(config, "model_type", "")),
        device=real_device,
        dtype=str(dtype).removeprefix("torch.") if quant is None else request.quantization,
        context_window=context_window_of(config, tokenizer, request.context_window),
        lora=lora or None,
    )
    log.info("loaded %s (%s) on %s as %s", info.name, info.arch, info.device, info.dtype)
    _progress(progress, 1.0, "Ready")
    return TransformersChatModel(model, tokenizer, info, is_seq2seq=kind == "seq2seq")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _is_oom(exc: BaseException) -> bool:
    from bubble_desktop.core.llm.transformers_backend import _is_oom as is_oom

    return is_oom(exc)


def _free() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """A cheap check for pickers: does this folder look like a model?"""
    return (Path(path) / "config.json").is_file()
