"""Recommended chat models, with the memory they need: what the first-run panel offers.

Memory figures are rough guides for the weights plus a modest context (fp16 on a GPU, fp32/bf16
on a CPU); they are not measured on the user's machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RecommendedModel:
    name: str
    hub_id: str
    memory: str  # what the user needs, in words
    min_ram_gb: float  # to run on the CPU
    min_vram_gb: float  # to run on a GPU (0 = not worth it / not applicable)
    languages: tuple[str, ...] = ("en",)
    remote_code: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel(
        "ChatGLM-6B-int4",
        "THUDM/chatglm-6b-int4",
        "6 GB VRAM / ~8 GB RAM",
        8.0,
        6.0,
        ("zh", "en"),
        remote_code=True,
        note="Chinese and English; ships its own code.",
    ),
    RecommendedModel(
        "Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "~2 GB RAM / 1.5 GB VRAM",
        2.0,
        1.5,
        ("zh", "en", "multi"),
        note="Smallest multilingual choice; fast on any CPU.",
    ),
    RecommendedModel(
        "Qwen2.5-1.5B-Instruct",
        "Qwen/Qwen2.5-1.5B-Instruct",
        "~4 GB RAM / 3 GB VRAM",
        4.0,
        3.0,
        ("zh", "en", "multi"),
    ),
    RecommendedModel(
        "Qwen2.5-3B-Instruct",
        "Qwen/Qwen2.5-3B-Instruct",
        "~8 GB RAM / 6 GB VRAM",
        8.0,
        6.0,
        ("zh", "en", "multi"),
    ),
    RecommendedModel(
        "SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "~1 GB RAM",
        1.0,
        0.5,
        note="Tiny and very fast; simple answers only.",
    ),
    RecommendedModel("SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "~1.5 GB RAM", 1.5, 1.0),
    RecommendedModel(
        "SmolLM2-1.7B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "~7 GB RAM / 4 GB VRAM", 7.0, 4.0
    ),
    RecommendedModel(
        "Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-1B-Instruct",
        "~5 GB RAM / 3 GB VRAM",
        5.0,
        3.0,
        ("en", "multi"),
        note="Gated on the hub: accept Meta's licence first.",
    ),
    RecommendedModel(
        "Llama-3.2-3B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
        "~13 GB RAM / 7 GB VRAM",
        13.0,
        7.0,
        ("en", "multi"),
        note="Gated on the hub: accept Meta's licence first.",
    ),
)


def recommend(ram_gb: float, vram_gb: float = 0.0, language: str = "en") -> list[RecommendedModel]:
    """Models that fit the machine, best-fitting (largest) first, preferring ``language``."""
    fits = [
        m for m in RECOMMENDED if m.min_ram_gb <= ram_gb or (vram_gb > 0 and 0 < m.min_vram_gb <= vram_gb)
    ]
    return sorted(fits, key=lambda m: (language not in m.languages, -max(m.min_ram_gb, m.min_vram_gb)))
