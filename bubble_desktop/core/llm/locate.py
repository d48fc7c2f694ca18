"""Where a model path points: a folder or file here, a name under the models dir, or a hub id in the cache.

Its own module so that both the loader and the ChatGLM loader (``chatglm/model.py``) use it without
importing each other (``loader`` imports ``chatglm``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bubble_desktop.core.errors import ModelNotFoundError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_path(path: str, allow_download: bool = False) -> Path:
    """A local model folder for ``path``: the folder itself, or a hub id already in the HF cache."""
    if not path or not path.strip():
        raise ModelNotFoundError(
            "No model is chosen.", "Choose a model folder in Settings → Model, or pass --model PATH."
        )
    p = Path(path).expanduser()
    if p.exists():
        return p
    if os.sep not in path and "/" not in path:
        from bubble_desktop.core.paths import Paths

        imported = Paths.default().models_dir / path
        if imported.exists():
            return imported
        downloaded = Paths.default().models_dir / "downloads" / path  # bubble-cli models download
        if (downloaded / "config.json").is_file():
            return downloaded
    if _HUB_ID.match(path) and not path.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(path, local_files_only=not allow_download))
        except Exception as exc:
            if allow_download:
                raise ModelNotFoundError(
                    (
                        f"Could not download {path!r}: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                    ),
                    "Check the model id and your network connection, or download the model folder yourself.",
                ) from exc
            raise ModelNotFoundError(
                f"{path!r} is not a folder here and is not downloaded in the Hugging Face cache "
                "(Bubble never downloads without asking).",
                "Download the model folder and choose it, or allow the download explicitly.",
            ) from exc
    raise ModelNotFoundError(f"The model folder {str(p)!r} does not exist.")
