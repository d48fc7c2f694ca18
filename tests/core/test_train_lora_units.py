"""LoRA job pieces without training: defaults by hardware, target modules by architecture, the
memory estimate, adapter names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bubble_desktop.core.errors import TrainingError
from bubble_desktop.core.train.lora import (
    LoraSettings,
    check_name,
    count_parameters,
    estimate_memory,
    find_target_modules,
    resolve_settings,
)


def test_defaults_by_hardware() -> None:
    base = LoraSettings(model="m", data=["d"], name="n")
    cpu = resolve_settings(base, "cpu", n_examples=200, context_window=2048)
    assert (cpu.rank, cpu.alpha, cpu.lr, cpu.max_len, cpu.grad_accum, cpu.epochs) == (
        8,
        16,
        2e-4,
        512,
        8,
        3.0,
    )
    gpu = resolve_settings(base, "cuda", n_examples=20000, context_window=800, free_bytes=24 << 30)
    assert (gpu.rank, gpu.alpha, gpu.max_len, gpu.grad_accum, gpu.epochs) == (16, 32, 800, 16, 1.0)
    small_gpu = resolve_settings(base, "cuda", n_examples=8, context_window=0, free_bytes=6 << 30)
    assert (small_gpu.rank, small_gpu.grad_accum) == (8, 2)  # accumulation never exceeds what the data allows
    chosen = resolve_settings(
        LoraSettings(model="m", data=["d"], name="n", rank=4, lr=1e-3, max_len=64), "cpu", 10, 0
    )
    assert (chosen.rank, chosen.alpha, chosen.lr, chosen.max_len) == (4, 8, 1e-3, 64)
    assert LoraSettings.from_dict({**chosen.to_dict(), "unknown": 1}) == chosen


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        ("gpt2", ["c_attn", "c_proj", "c_fc"]),
        ("bloom", ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    ],
)
def test_target_modules_by_architecture(tmp_path: Path, arch: str, expected: list[str]) -> None:
    from transformers import AutoModelForCausalLM

    from tests.fixtures.tiny_models import build_tiny_model

    folder = build_tiny_model(tmp_path / arch, arch)
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert find_target_modules(model) == expected
    assert count_parameters(folder) == sum(p.numel() for p in model.parameters())  # from the headers only


def test_memory_estimate_grows_with_length_and_shrinks_with_checkpointing() -> None:
    cfg = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "vocab_size": 49152}
    s = LoraSettings(model="m", data=[], name="n", rank=8, max_len=512, memory_limit_mb=100_000)
    short = estimate_memory(cfg, 135_000_000, s, "cpu", 4, checkpointing=False)
    s.max_len = 2048
    long = estimate_memory(cfg, 135_000_000, s, "cpu", 4, checkpointing=False)
    ckpt = estimate_memory(cfg, 135_000_000, s, "cpu", 4, checkpointing=True)
    assert short.need_bytes < long.need_bytes and ckpt.need_bytes < long.need_bytes
    assert short.parts["weights"] == 135_000_000 * 4 and short.fits
    s.memory_limit_mb = 100
    assert not estimate_memory(cfg, 135_000_000, s, "cpu", 4, checkpointing=True).fits


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden"])
def test_bad_adapter_names(name: str) -> None:
    with pytest.raises(TrainingError):
        check_name(name)
