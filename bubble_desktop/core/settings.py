"""Validated settings, saved as JSON in the config folder.

Every field carries a title, a plain-words description and its range; the settings dialog is
built from that metadata (``field_info``). The file has a ``schema_version``; older files are
migrated, and a corrupt or invalid file is moved aside and replaced by defaults, with a notice —
never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bubble_desktop.core.i18n import N_, localize

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


# Kept in English in the settings file; shown and used in the UI's language while unchanged
DEFAULT_SYSTEM_PROMPT = N_(
    "You are O.Bubble, a helpful assistant that runs privately on the user's computer. Answer concisely."
)


def effective_system_prompt(text: str) -> str:
    """``text`` as the model gets it: the default in the user's language while it is unchanged."""
    return localize(DEFAULT_SYSTEM_PROMPT) if text.strip() == DEFAULT_SYSTEM_PROMPT else text


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True, frozen=False)


class ModelSettings(_Section):
    path: str = Field(
        "",
        title="Model",
        description=(
            "A folder with a chat model (config.json + weights), or a "
            ".gguf file (runs quantized through llama.cpp, no conversion)."
        ),
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto",
        title="Device",
        description=(
            "Where the model runs. Auto picks the GPU (CUDA or Apple MPS) when there is one, else the CPU."
        ),
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        title="Precision",
        description="Number format of the weights. Auto: bfloat16/float16 on a GPU, float32 on the CPU.",
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none",
        title="Quantization",
        description="Load the weights in 8 or 4 bits (bitsandbytes) to save memory, on an NVIDIA GPU or "
        "on the CPU (slower there than full precision; for speed on the CPU use a GGUF model).",
    )
    lora_path: str = Field(
        "",
        title="LoRA adapter",
        description="Optional folder with a PEFT/LoRA adapter applied on top of the model.",
    )
    context_window: int = Field(
        0,
        ge=0,
        le=1_048_576,
        title="Context window",
        description="Tokens the model can see at once. 0 reads it from the model's config.",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        title="CPU threads",
        description=(
            "Threads llama.cpp uses for GGUF models. 0 = the number of performance cores "
            "(all physical cores on a CPU without efficiency cores)."
        ),
    )
    gpu_layers: int = Field(
        -1,
        ge=-1,
        le=256,
        title="GPU layers",
        description=(
            "Layers of a GGUF model that run on the graphics card. "
            "-1 = as many as fit in its free memory, 0 = none (CPU only)."
        ),
    )
    backend: Literal["transformers", "openai"] = Field(
        "transformers",
        title="Run the model",
        description=(
            "On this computer, or on a server of your own that speaks the OpenAI API "
            "(vLLM, llama.cpp server, TGI): then Bubble sends it your prompts."
        ),
    )
    endpoint_url: str = Field(
        "",
        title="Server address",
        description="The address of your server's API, e.g. http://gpu-box:8000/v1.",
    )
    endpoint_model: str = Field(
        "", title="Model on the server", description="The name of the model the server should answer with."
    )
    endpoint_api_key: str = Field(
        "",
        title="Server password (API key)",
        description="Only if your server asks for one; sent to it only.",
    )


class SamplingSettings(_Section):
    temperature: float = Field(
        0.7,
        ge=0.0,
        le=2.0,
        title="Temperature",
        description=(
            "How adventurous the wording is. 0 always picks the most likely next word "
            "(repeatable answers); higher values give more varied, more surprising text."
        ),
        json_schema_extra={"step": 0.05},
    )
    top_p: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        title="Top-p",
        description=(
            "Only consider the smallest set of next words whose "
            "probabilities add up to this share. Lower = safer, more focused."
        ),
        json_schema_extra={"step": 0.01},
    )
    top_k: int = Field(
        40,
        ge=0,
        le=500,
        title="Top-k",
        description="Only consider the k most likely next words. 0 turns this limit off.",
    )
    min_p: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        title="Min-p",
        description=(
            "Drop next words less likely than this share of the "
            "most likely one. 0 turns it off; 0.05 is a good start."
        ),
        json_schema_extra={"step": 0.01},
    )
    repetition_penalty: float = Field(
        1.05,
        ge=1.0,
        le=2.0,
        title="Repetition penalty",
        description=(
            "Makes the model less likely to repeat itself (looks at the last 64 words it wrote). "
            "1.0 = no penalty; above 1.1 it starts to avoid even the numbers it should cite."
        ),
        json_schema_extra={"step": 0.01},
    )
    max_new_tokens: int = Field(
        512,
        ge=1,
        le=32_768,
        title="Max new tokens",
        description=(
            "The longest answer, in tokens (a token is roughly "
            "¾ of an English word or one Chinese character)."
        ),
    )
    seed: int = Field(
        -1,
        ge=-1,
        le=2**31 - 1,
        title="Seed",
        description=(
            "The same seed and settings give the same answer again. -1 picks a new random seed each time."
        ),
    )
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT,
        title="System prompt",
        description="Instructions the model sees before every conversation.",
    )

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


PRESETS: dict[str, dict[str, Any]] = {
    # measured on SmolLM2 with two indexed documents: 1.1 already makes it cite [3] for source [1]
    # (the "1" of a year it just wrote is penalised); 1.05 quotes the fact and cites [1] on both backends
    "precise": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0},
    "balanced": {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.05},
    "creative": {"temperature": 1.1, "top_p": 0.95, "top_k": 100, "repetition_penalty": 1.1},
}


def apply_preset(sampling: SamplingSettings, name: str) -> SamplingSettings:
    if name not in PRESETS:
        raise KeyError(name)
    return sampling.model_copy(update=PRESETS[name])


# calibrated by tests/bench/relevance.py (see core/kb/relevance.py)
DEFAULT_MIN_RELEVANCE = 0.3


class KnowledgeSettings(_Section):
    embedding_model: str = Field(
        "",
        title="Embedding model",
        description=(
            "A sentence-transformers model id or folder. Empty uses "
            "the built-in all-MiniLM-L6-v2 (English; Chinese still "
            "works through keyword search). For Chinese documents "
            "a multilingual model such as bge-small-zh is better."
        ),
    )
    chunk_size: int = Field(
        500,
        ge=100,
        le=8000,
        title="Chunk size",
        description="Characters per piece of a document that is indexed and retrieved.",
    )
    chunk_overlap: int = Field(
        80,
        ge=0,
        le=2000,
        title="Chunk overlap",
        description=(
            "Characters shared by neighbouring pieces, so a sentence cut at a boundary is still found."
        ),
    )
    top_k: int = Field(
        4,
        ge=1,
        le=50,
        title="Sources per answer",
        description="How many pieces of your documents are given to the model with each question.",
    )
    score_threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        title="Minimum score",
        description="Pieces scoring below this are not used. 0 keeps the best ones whatever their score.",
        json_schema_extra={"step": 0.01},
    )
    min_relevance: float = Field(
        DEFAULT_MIN_RELEVANCE,
        ge=0.0,
        le=1.0,
        title="Minimum relevance",
        description=(
            "Pieces that match the question less than this are not used or listed as sources, so a "
            "question your documents cannot answer gets none. 0 always uses the best pieces."
        ),
        json_schema_extra={"step": 0.05},
    )
    hybrid: bool = Field(
        True,
        title="Hybrid search",
        description=(
            "Combine meaning-based (dense) and keyword (BM25) search. "
            "Keeps Chinese retrieval working with English embedding models."
        ),
    )
    vector_store: Literal["edge", "qdrant", "milvus-lite", "milvus"] = Field(
        "edge",
        title="Vector database",
        description=(
            "Where new knowledge bases keep their vectors: Qdrant Edge or Milvus Lite on this computer, "
            "or your own Qdrant or Milvus server. Each knowledge base stays where it was created."
        ),
    )
    qdrant_url: str = Field(
        "",
        title="Qdrant server address",
        description=(
            "The address of your own Qdrant database server, e.g. http://localhost:6333 "
            "(with the vector database set to Qdrant server)."
        ),
    )
    qdrant_api_key: str = Field(
        "", title="Server password (API key)", description="Only if your Qdrant server asks for one."
    )
    milvus_url: str = Field(
        "",
        title="Milvus server address",
        description=(
            "A Milvus server or cluster of your own (e.g. http://localhost:19530) or a Zilliz Cloud endpoint."
        ),
    )
    milvus_token: str = Field(
        "",
        title="Milvus password (token)",
        description="Only if your Milvus server asks for one: user:password or an API key.",
    )
    embed_threads: int = Field(
        0,
        ge=0,
        le=64,
        title="Embedding threads",
        description="CPU threads used for embedding. 0 chooses automatically.",
    )
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        title="OCR (text recognition)",
        description=(
            "Read scanned PDF pages and images by OCR. Auto: only pages without a "
            "usable text layer; always: every PDF page; never: skip scanned pages."
        ),
    )
    ocr_max_pages: int = Field(
        500,
        ge=1,
        le=100000,
        title="OCR page limit",
        description=(
            "A file that needs OCR on more pages than this is refused (OCR takes about a second per page)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _qdrant_url_means_qdrant(cls, data: Any) -> Any:
        """Settings from before ``vector_store``: a Qdrant URL meant "use that server"."""
        if (
            isinstance(data, dict)
            and "vector_store" not in data
            and str(data.get("qdrant_url") or "").strip()
        ):
            return {**data, "vector_store": "qdrant"}
        return data

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk overlap must be smaller than chunk size")
        if self.vector_store == "qdrant" and not self.qdrant_url.strip():
            raise ValueError("a Qdrant server needs its qdrant URL")
        if self.vector_store == "milvus" and not self.milvus_url.strip():
            raise ValueError("a Milvus server needs its milvus URL")
        return self


class WebSettings(_Section):
    enabled: bool = Field(
        False,
        title="Search the web",
        description=(
            "Send your question to DuckDuckGo and give fresh results to the "
            "model. Off by default: when on, the question leaves this computer."
        ),
    )
    mode: Literal["news", "text"] = Field(
        "news", title="Search type", description="News articles or general web pages."
    )
    timelimit: Literal["d", "w", "m", "y", "any"] = Field(
        "w", title="Time range", description="Only results from the past day, week, month or year."
    )
    region: str = Field("wt-wt", title="Region", description="Prefer results from this country or region.")
    safesearch: Literal["on", "moderate", "off"] = Field(
        "moderate", title="Safe search", description="Filter explicit results."
    )
    max_results: int = Field(
        5, ge=1, le=25, title="Results", description="How many search results are given to the model."
    )
    deadline_s: float = Field(
        8.0,
        ge=1.0,
        le=60.0,
        title="Deadline (s)",
        description="Give up on the web after this many seconds and answer without it.",
        json_schema_extra={"step": 0.5},
    )
    proxy: str = Field(
        "",
        title="Proxy",
        description="Optional proxy, e.g. socks5h://127.0.0.1:1080 or http://user:pass@host:port.",
    )


class AppearanceSettings(_Section):
    language: Literal["system", "zh_CN", "en"] = Field(
        "system",
        title="Language",
        description="Language of the app. System follows your computer's language.",
    )
    theme: Literal["system", "light", "dark"] = Field(
        "system", title="Theme", description="Light or dark colours, or follow the system."
    )
    font_size: int = Field(11, ge=8, le=24, title="Font size", description="Text size in points in the chat.")


class ApiSettings(_Section):
    enabled: bool = Field(
        False,
        title="Serve the OpenAI-compatible API",
        description=(
            "Let other programs on this computer (editors, scripts, browser extensions) use "
            "the loaded model and your knowledge bases through the OpenAI API. Off by default."
        ),
    )
    host: str = Field(
        "127.0.0.1",
        title="Address",
        description=(
            "127.0.0.1 = this computer only. Any other address "
            "lets other computers connect and needs an API key."
        ),
    )
    port: int = Field(
        8765,
        ge=0,
        le=65535,
        title="Port",
        description="The port programs connect to, e.g. http://127.0.0.1:8765/v1. 0 picks a free one.",
    )
    api_key: str = Field(
        "",
        title="API key",
        description="Clients must send it as a Bearer token. Required for any address other than 127.0.0.1.",
    )


class Settings(_Section):
    schema_version: int = SCHEMA_VERSION
    model: ModelSettings = Field(default_factory=ModelSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    appearance: AppearanceSettings = Field(default_factory=AppearanceSettings)

    def snapshot(self) -> Settings:
        """An independent deep copy, taken when a message is sent (later edits don't touch it)."""
        return self.model_copy(deep=True)


SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSettings,
    "sampling": SamplingSettings,
    "knowledge": KnowledgeSettings,
    "web": WebSettings,
    "api": ApiSettings,
    "appearance": AppearanceSettings,
}


def field_info(section: type[_Section]) -> list[dict[str, Any]]:
    """Title, description, type, range and choices of each field: what the settings dialog is built from."""
    schema = section.model_json_schema()
    out = []
    for name, f in section.model_fields.items():
        prop = schema["properties"][name]
        info: dict[str, Any] = {
            "name": name,
            "title": f.title or name,
            "description": f.description or "",
            "default": f.default,
            "type": prop.get("type"),
            "minimum": prop.get("minimum"),
            "maximum": prop.get("maximum"),
            "choices": prop.get("enum"),
            "step": prop.get("step"),
        }
        out.append(info)
    return out


# Migrations: version N -> N+1 on the raw dict. Add one whenever SCHEMA_VERSION goes up.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    0: lambda d: {**d, "schema_version": 1},
}


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    version = int(data.get("schema_version", 0))
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version = int(data["schema_version"])
    return data


def load_settings(path: Path) -> tuple[Settings, list[str]]:
    """Read settings; returns them and notices for the user (e.g. a corrupt file that was moved aside)."""
    notices: list[str] = []
    if not path.exists():
        return Settings(), notices
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if int(raw.get("schema_version", 0)) > SCHEMA_VERSION:
            notices.append(
                N_(
                    f"Settings file {path} is from a newer Bubble (schema {raw.get('schema_version')}); "
                    "unknown options are ignored."
                )
            )
        return Settings.model_validate(_migrate(raw)), notices
    except (ValueError, ValidationError, OSError, KeyError, TypeError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
            where = N_(f"It was moved to {aside}.")
        except OSError:
            where = N_("It could not be moved aside.")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("settings file %s unreadable: %s", path, exc)
        notices.append(N_(f"Your settings file could not be read ({first}). Defaults are used. {where}"))
        return Settings(), notices


def save_settings(settings: Settings, path: Path) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(settings.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)
