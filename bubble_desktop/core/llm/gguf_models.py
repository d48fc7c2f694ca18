"""GGUF files registered by path (``bubble-cli models add``), optionally copied into the models dir.

The registry is ``gguf_models.json`` in the models dir: ``{name: absolute path}``. A GGUF copied into
the models dir is found by its file name as well, without an entry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bubble_desktop.core.errors import ModelError
from bubble_desktop.core.paths import Paths

_REGISTRY = "gguf_models.json"


def _root(models_dir: Path | None) -> Path:
    return models_dir if models_dir is not None else Paths.default().models_dir


def registered(models_dir: Path | None = None) -> dict[str, str]:
    """name → path of every registered or copied GGUF file."""
    root = _root(models_dir)
    out: dict[str, str] = {}
    if root.is_dir():
        for p in sorted(root.glob("*.gguf")):
            out[p.stem] = str(p)
    try:
        data = json.loads((root / _REGISTRY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if isinstance(data, dict):
        out.update({str(k): str(v) for k, v in data.items()})
    return out


def add_gguf(
    file: str, name: str | None = None, *, copy: bool = False, models_dir: Path | None = None
) -> Path:
    """Register ``file`` (validated first); with ``copy`` the file is copied into the models dir."""
    from bubble_desktop.core.llm.llamacpp_backend import inspect_gguf

    facts = inspect_gguf(file)
    src = Path(facts.path).resolve()
    root = _root(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    model_name = name or src.stem
    if "/" in model_name or "\\" in model_name or model_name in ("", ".", ".."):
        raise ModelError(f"{model_name!r} is not a valid model name.", "Use a plain name without slashes.")
    target = src
    if copy:
        target = root / f"{model_name}.gguf"
        if target.exists() and target.resolve() != src:
            raise ModelError(f"A model named {model_name!r} already exists.", "Choose another name.")
        if target.resolve() != src:
            tmp = target.with_suffix(".gguf.part")
            shutil.copyfile(src, tmp)
            tmp.replace(target)
    reg_path = root / _REGISTRY
    try:
        data = json.loads(reg_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[model_name] = str(target)
    tmp_reg = reg_path.with_suffix(".json.tmp")
    tmp_reg.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp_reg.replace(reg_path)
    return target


def resolve_registered(name: str, models_dir: Path | None = None) -> str | None:
    """The path of a registered GGUF by name, else None."""
    return registered(models_dir).get(name)
