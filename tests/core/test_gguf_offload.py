"""GPU offload planning for llama.cpp: how many layers fit in the free VRAM (issue 10).

No GPU is needed: the plan is a pure function of the GGUF header and the free memory llama.cpp reports,
so it is checked here on the tiny GGUF's real tensor table and on a 7B-shaped model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from bubble_desktop.core.llm.base import ModelInfo
from bubble_desktop.core.llm.llamacpp_backend import LlamaCppChatModel, inspect_gguf
from bubble_desktop.core.llm.llamacpp_child import GgufFacts, gpu_weight_bytes, plan_gpu_layers

MIB = 2**20
GIB = 2**30

# a Llama-2-7B Q4_K_M shape: 32 blocks of ~120 MB, a 105 MB head, 4.1 GB in all
SEVEN_B = GgufFacts(
    path="llama-7b.Q4_K_M.gguf",
    arch="llama",
    name="llama-7b",
    context_length=4096,
    n_layers=32,
    n_embd=4096,
    n_head=32,
    n_head_kv=32,
    file_size=4_080 * MIB,
    has_chat_template=True,
    layer_bytes=(120 * MIB,) * 32,
    output_bytes=105 * MIB,
)


def test_the_header_gives_each_blocks_weights_and_the_head(tiny_gguf: Path) -> None:
    facts = inspect_gguf(tiny_gguf)
    assert len(facts.layer_bytes) == facts.n_layers == 2
    assert all(b > 0 for b in facts.layer_bytes) and facts.output_bytes > 0
    # blocks + head + embedding + norms cannot exceed the file
    assert sum(facts.layer_bytes) + facts.output_bytes < facts.file_size


def test_auto_puts_everything_on_a_big_card() -> None:
    assert plan_gpu_layers(SEVEN_B, 4096, 24 * GIB) == 33  # 32 blocks + the output head


def test_auto_puts_as_many_blocks_as_fit_on_a_small_card() -> None:
    # 4 GB free: reserve 512 MB, 64 MB activations; each block 120 MB + 64 MB of f16 KV at 4k context
    n = plan_gpu_layers(SEVEN_B, 4096, 4 * GIB)
    assert 0 < n < 32
    per_block = 120 * MIB + SEVEN_B.kv_cache_bytes(4096) // 32
    assert n == (4 * GIB - 512 * MIB - 4096 * 4096 * 4) // per_block
    # a shorter context leaves room for more blocks
    assert plan_gpu_layers(SEVEN_B, 1024, 4 * GIB) > n


def test_auto_without_room_or_without_a_gpu_offloads_nothing() -> None:
    assert plan_gpu_layers(SEVEN_B, 4096, 300 * MIB) == 0
    assert plan_gpu_layers(SEVEN_B, 4096, 0) == 0


def test_the_users_own_number_wins_and_is_capped() -> None:
    assert plan_gpu_layers(SEVEN_B, 4096, 0, requested=10) == 10
    assert plan_gpu_layers(SEVEN_B, 4096, 24 * GIB, requested=0) == 0
    assert plan_gpu_layers(SEVEN_B, 4096, 24 * GIB, requested=999) == 33


def test_offloaded_layers_are_taken_off_the_ram_estimate() -> None:
    assert gpu_weight_bytes(SEVEN_B, 0, 4096) == 0
    ten = gpu_weight_bytes(SEVEN_B, 10, 4096)
    assert ten == 10 * 120 * MIB + SEVEN_B.kv_cache_bytes(4096) * 10 // 32
    everything = gpu_weight_bytes(SEVEN_B, 33, 4096)
    assert everything == 32 * 120 * MIB + SEVEN_B.kv_cache_bytes(4096) + 105 * MIB


def test_status_bar_names_full_and_partial_offload() -> None:
    info = ModelInfo(
        name="llama-7b", path="x", arch="llama", device="CUDA0", dtype="gguf", context_window=4096
    )

    def status(gpu_layers: int) -> str:
        model = LlamaCppChatModel(None, None, None, SEVEN_B, info, threads=4, gpu_layers=gpu_layers)
        return model.status_text

    assert status(33) == "CUDA0 · 32/32 layers"
    assert status(20) == "CUDA0 · 20/32 layers · CPU 4 threads"
    cpu = replace(info, device="cpu")
    assert (
        LlamaCppChatModel(None, None, None, SEVEN_B, cpu, threads=1, gpu_layers=0).status_text
        == "CPU · 1 thread"
    )


def test_the_cli_and_the_settings_pass_the_layer_count_to_the_loader(monkeypatch) -> None:
    import argparse

    from bubble_desktop.commands import ask
    from bubble_desktop.core.llm import loader
    from bubble_desktop.core.settings import ModelSettings, Settings

    assert "gpu_layers" not in loader.from_settings(ModelSettings()).extra  # auto is the default
    assert loader.from_settings(ModelSettings(gpu_layers=0)).extra["gpu_layers"] == 0
    parser = argparse.ArgumentParser()
    ask.register(parser.add_subparsers())
    args = parser.parse_args(["ask", "hi", "--model", "x.gguf", "--gpu-layers", "12"])
    seen = []
    loaded = SimpleNamespace(
        info=ModelInfo(name="x", path="x.gguf", arch="llama", device="cpu", dtype="gguf", context_window=8)
    )
    monkeypatch.setattr(loader, "load_model", lambda request: seen.append(request) or loaded)
    ask.load_for_args(args, Settings())
    assert seen[0].path == "x.gguf" and seen[0].extra["gpu_layers"] == 12


def test_what_a_gguf_runs_on_reads_in_chinese(monkeypatch) -> None:
    """The status bar localizes core's text: '已就绪（CPU · 2 threads）' was seen in a real window."""
    from bubble_desktop.core.i18n import Catalog, localize, set_translator
    from tests.core.test_core_messages_i18n import ROOT, _load

    chinese = dict(_load("zh_CN", ROOT / "resources" / "i18n" / "zh_CN.py").CORE_TRANSLATIONS)
    set_translator(Catalog(chinese, lambda template: chinese.get(template, template)))
    try:
        info = ModelInfo(
            name="llama-7b", path="x", arch="llama", device="CUDA0", dtype="gguf", context_window=4096
        )

        def status(gpu_layers: int, threads: int = 4) -> str:
            model = LlamaCppChatModel(None, None, None, SEVEN_B, info, threads=threads, gpu_layers=gpu_layers)
            return localize(model.status_text)

        assert status(33) == "CUDA0 · 32/32 层"
        assert status(20) == "CUDA0 · 20/32 层 · CPU 4 线程"
        assert status(20, threads=1) == "CUDA0 · 20/32 层 · CPU 1 线程"
        assert status(0, threads=8) == "CPU · 8 线程"
        assert status(0, threads=1) == "CPU · 1 线程"
    finally:
        set_translator(None)
    assert status(0, threads=8) == "CPU · 8 threads"  # without a translator (CLI, API): English
