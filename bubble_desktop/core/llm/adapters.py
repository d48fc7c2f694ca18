"""What an adapter folder (``LoadRequest.lora_path``) holds: a peft LoRA adapter or a P-tuning v2 checkpoint.

A P-tuning v2 checkpoint is what THUDM's ``ptuning/`` training writes for ChatGLM-6B / ChatGLM2-6B:
the model's ``config.json`` with ``pre_seq_len`` (and ``prefix_projection``) and a ``pytorch_model.bin``
that holds only the ``transformer.prefix_encoder.*`` weights. It is applied as THUDM's README says:
the base model is built with ``pre_seq_len``/``prefix_projection`` from the checkpoint's config, then
the prefix encoder gets the checkpoint's weights (kept in float32 when the model runs in half precision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bubble_desktop.core.errors import ModelError, ModelNotFoundError, UnsupportedModelError

PREFIX = "transformer.prefix_encoder."
PTUNING_WEIGHTS = "pytorch_model.bin"


@dataclass(frozen=True)
class Adapter:
    kind: Literal["lora", "ptuning"]
    folder: Path
    pre_seq_len: int = 0
    prefix_projection: bool = False


def resolve_adapter_path(value: str) -> str:
    """``value`` as a folder, or the name of an adapter trained in the app (``models/lora/NAME``)."""
    given = Path(value).expanduser()
    if given.exists() or "/" in value or "\\" in value:
        return str(given)
    from bubble_desktop.core.paths import Paths

    named = Paths.default().models_dir / "lora" / value
    return str(named) if named.is_dir() else str(given)


def inspect_adapter(path: str) -> Adapter:
    """The kind of adapter in ``path``; a clear error for a folder that is neither kind."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"The adapter folder {str(folder)!r} does not exist.",
            "Choose the folder of a LoRA adapter or of a P-tuning v2 checkpoint, or clear the LoRA setting.",
        )
    if (folder / "adapter_config.json").is_file():
        return Adapter("lora", folder)
    config: dict[str, Any] = {}
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        pass
    pre_seq_len = config.get("pre_seq_len")
    if not isinstance(pre_seq_len, int) or isinstance(pre_seq_len, bool) or pre_seq_len <= 0:
        raise ModelNotFoundError(
            f"{str(folder)!r} is neither a LoRA adapter (no adapter_config.json) nor a P-tuning v2 "
            "checkpoint (no config.json with pre_seq_len).",
            (
                "Choose a folder saved by peft, or a checkpoint folder of ChatGLM's P-tuning v2 "
                "training (config.json + pytorch_model.bin), or clear the LoRA setting."
            ),
        )
    if not (folder / PTUNING_WEIGHTS).is_file():
        raise ModelNotFoundError(
            f"The P-tuning v2 checkpoint {str(folder)!r} has no {PTUNING_WEIGHTS}.",
            "Choose the checkpoint folder the training saved (config.json + pytorch_model.bin).",
        )
    return Adapter("ptuning", folder, pre_seq_len, bool(config.get("prefix_projection", False)))


def refuse_ptuning(adapter: Adapter, model_name: str) -> None:
    """For models that have no prefix encoder (anything but ChatGLM's own code)."""
    if adapter.kind == "ptuning":
        raise UnsupportedModelError(
            f"{adapter.folder.name} is a P-tuning v2 checkpoint, which needs a model with a prefix "
            f"encoder (ChatGLM-6B, ChatGLM2-6B); {model_name} has none.",
            "Use it with the ChatGLM model it was trained on, or choose a LoRA adapter.",
        )


def prefix_state_dict(adapter: Adapter) -> dict[str, Any]:
    """The checkpoint's prefix encoder weights, with the ``transformer.prefix_encoder.`` prefix stripped."""
    import torch

    path = adapter.folder / PTUNING_WEIGHTS
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — a damaged or foreign file becomes one clear message
        raise ModelError(
            f"The P-tuning v2 weights {str(path)!r} could not be read: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise ModelError(f"{str(path)!r} holds no weights (it is not a state dict).")
    prefix = {str(k).removeprefix(PREFIX): v for k, v in state.items() if str(k).startswith(PREFIX)}
    if not prefix:
        raise ModelError(
            f"{str(path)!r} holds no prefix encoder weights (transformer.prefix_encoder.*).",
            "Choose the checkpoint folder of a P-tuning v2 training.",
        )
    return prefix


def load_prefix_encoder(model: Any, adapter: Adapter, half: bool) -> None:
    """Put the checkpoint's weights into ``model.transformer.prefix_encoder`` (float32 when ``half``).

    Called once the model is on its device and in its precision: load_state_dict copies into place.
    """
    encoder = getattr(getattr(model, "transformer", None), "prefix_encoder", None)
    if encoder is None:
        raise UnsupportedModelError(
            f"{adapter.folder.name} is a P-tuning v2 checkpoint, but this model's code has no prefix "
            "encoder (pre_seq_len).",
            "Use it with the ChatGLM model it was trained on, or choose a LoRA adapter.",
        )
    state = prefix_state_dict(adapter)
    _restore_prefix_tokens(model.transformer, adapter.pre_seq_len, encoder)
    if half:  # as THUDM's README: the prefix encoder stays in float32 (before loading: no rounding)
        encoder.float()
    try:
        encoder.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 — shape or key mismatch: trained for another model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"The P-tuning v2 checkpoint does not fit this model: {first}",
            "Use a checkpoint trained for this base model.",
        ) from exc


def _restore_prefix_tokens(transformer: Any, pre_seq_len: int, encoder: Any) -> None:
    """ChatGLM keeps ``prefix_tokens = torch.arange(pre_seq_len)`` as a plain attribute (no buffer).

    transformers 5 builds models on the meta device, so that tensor has no data there (transformers 4
    built them on the CPU): put back what ChatGLM's ``__init__`` computes, next to the encoder's weights.
    """
    import torch

    tokens = getattr(transformer, "prefix_tokens", None)
    if isinstance(tokens, torch.Tensor) and tokens.is_meta:
        device = next(encoder.parameters()).device
        transformer.prefix_tokens = torch.arange(pre_seq_len, device=device).long()


def apply_lora(model: Any, lora_path: str, merge: bool) -> Any:
    """The model wrapped with the peft LoRA adapter in `lora_path`, merged into the weights if `merge`."""
    folder = Path(lora_path).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"{str(folder)!r} is not a LoRA adapter folder (no adapter_config.json).",
            (
                "Choose a folder saved by peft (adapter_config.json "
                "+ adapter weights), or clear the LoRA setting."
            ),
        )
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except Exception as exc:
        raise ModelError(
            f"The LoRA adapter does not fit this model: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            "Use an adapter trained for this base model.",
        ) from exc
    # merging folds the adapter into the weights: no per-step overhead while generating
    return peft_model.merge_and_unload() if merge else peft_model
