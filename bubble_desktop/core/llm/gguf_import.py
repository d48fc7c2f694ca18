"""Convert a GGUF file once into a normal safetensors model folder under the models dir.

transformers can read GGUF (it dequantizes to float weights), but that is slow on every start and
a GGUF-loaded model refuses ``save_pretrained`` ("quantized with gguf and is not serializable").
So the import builds a fresh model from the config without ``quantization_config``, copies the
dequantized state dict into it, and saves that (as float16) with the tokenizer (chat template included).
Later loads take the folder and are fast.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import ModelError, ModelNotFoundError, UnsupportedModelError
from bubble_desktop.core.llm.base import ProgressCallback
from bubble_desktop.core.paths import Paths

log = logging.getLogger(__name__)


def default_name(gguf: Path) -> str:
    """A folder name from the file name: 'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'SmolLM2-135M-Instruct-Q4_1'."""
    stem = gguf.name[: -len(".gguf")] if gguf.name.lower().endswith(".gguf") else gguf.stem
    return re.sub(r"[^\w.-]+", "-", stem).replace(".", "-").strip("-") or "imported-model"


def import_gguf(
    file: str | Path,
    name: str | None = None,
    *,
    models_dir: Path | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Convert ``file`` into ``models_dir/name`` (safetensors + tokenizer); returns the folder."""
    gguf = Path(file).expanduser().resolve()
    if not gguf.is_file():
        raise ModelNotFoundError(f"The GGUF file {str(gguf)!r} does not exist.", "Check the path.")
    if gguf.suffix.lower() != ".gguf":
        raise ModelError(f"{gguf.name} is not a .gguf file.", "Choose a file ending in .gguf.")
    target_root = models_dir if models_dir is not None else Paths.default().models_dir
    name = name or default_name(gguf)
    if not re.fullmatch(r"[\w][\w.-]*", name):
        raise ModelError(f"{name!r} is not a usable model name.", "Use letters, digits, '-', '_' or '.'.")
    target = target_root / name
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise ModelError(
                f"A model named {name!r} already exists at {target}.",
                "Convert it under another name, or delete that folder first.",
            )
        shutil.rmtree(target)

    def say(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    folder, fname = str(gguf.parent), gguf.name
    say(0.05, "Reading the GGUF file")
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=fname, local_files_only=True)
    except Exception as exc:
        raise UnsupportedModelError(
            f"transformers cannot read this GGUF file: {_first_line(exc)}",
            "GGUF import supports the architectures transformers can dequantize (llama, mistral, qwen2, "
            "phi3, gemma, …); try the original safetensors model instead.",
        ) from exc
    say(0.15, "Reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname, local_files_only=True)
    say(0.3, "Dequantizing the weights")
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, local_files_only=True)
    say(0.7, "Writing a safetensors model folder")
    state = loaded.state_dict()
    clean = _plain_config(config)
    fresh = _fresh_model(clean)
    missing, unexpected = fresh.load_state_dict(state, strict=False, assign=True)
    # tied weights (lm_head = embeddings) may legitimately be absent from the GGUF state dict
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ModelError(
            (
                "The GGUF weights do not match the model layout "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
            ),
            "This GGUF file's architecture is not fully supported; use the original model folder.",
        )
    if getattr(clean, "tie_word_embeddings", False):
        fresh.tie_weights()
    still_meta = [n for n, t in list(fresh.named_parameters()) + list(fresh.named_buffers()) if t.is_meta]
    if still_meta:
        raise ModelError(
            f"The GGUF file lacks weights for {still_meta[:3]}.",
            "This GGUF file's architecture is not fully supported; use the original model folder.",
        )
    fresh.generation_config = loaded.generation_config
    del loaded, state
    # Saved as float16: half the disk of float32 (a 7B model: ~14 GB instead of ~28 GB); its rounding
    # (~5e-4 relative) is far below the GGUF quantization error. Loading still picks the dtype for the
    # device (float32 on the CPU, bfloat16/float16 on a GPU).
    fresh = fresh.half()
    tmp = target.with_name(target.name + ".importing")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(1.0, "Imported")
    log.info("imported %s as %s", gguf, target)
    return target


def _plain_config(config: Any) -> Any:
    """A copy of the config without the GGUF quantization_config, so the model can be saved."""
    data = config.to_dict()
    data.pop("quantization_config", None)
    return type(config).from_dict(data)


def _fresh_model(config: Any) -> Any:
    """A model skeleton with its parameters on the meta device (buffers such as rotary frequencies stay
    real): no time spent on a random init that the GGUF weights overwrite anyway."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]  # unannotated


def list_imported(models_dir: Path | None = None) -> list[Path]:
    """Model folders under the models dir (those with a config.json)."""
    root = models_dir if models_dir is not None else Paths.default().models_dir
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
