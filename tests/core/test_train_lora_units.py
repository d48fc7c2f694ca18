"""LoRA job pieces without training: defaults by hardware, target modules by architecture, the
memory estimate, adapter names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.errors import TrainingError
from bubble_desktop.core.train.lora import (
    LoraSettings,
    check_name,
    count_parameters,
    estimate_memory,
    find_target_modules,
    pick_quantization,
    resolve_settings,
)
from tests.fixtures.markers import needs_bitsandbytes_cpu


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


def test_qlora_is_picked_when_full_precision_does_not_fit_and_4_bit_can_run() -> None:
    missing = ("4-bit QLoRA training needs the bitsandbytes package.", "pip install bitsandbytes")
    assert pick_quantization("auto", "cuda:0", None, fits_unquantized=False)
    assert pick_quantization("auto", "cpu", None, fits_unquantized=False)  # bitsandbytes' CPU backend
    assert not pick_quantization("auto", "cuda:0", None, fits_unquantized=True)
    assert not pick_quantization("auto", "cuda:0", missing, fits_unquantized=False)
    assert pick_quantization("4bit", "cpu", None, fits_unquantized=True)
    assert not pick_quantization("none", "cuda", None, fits_unquantized=False)
    with pytest.raises(TrainingError, match="bitsandbytes") as no_bnb:
        pick_quantization("4bit", "cuda", missing, fits_unquantized=True)
    assert no_bnb.value.hint == "pip install bitsandbytes"
    with pytest.raises(TrainingError, match="Unknown quantization"):
        pick_quantization("3bit", "cuda", None, fits_unquantized=True)


def test_bitsandbytes_problem_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from bubble_desktop.core.llm import loader

    monkeypatch.setattr(loader, "bitsandbytes_version", lambda: None)
    assert loader.bitsandbytes_problem("cuda", "8bit") == (
        "8bit loading needs the bitsandbytes package.",
        "pip install bitsandbytes",
    )
    missing = loader.bitsandbytes_problem("cuda", "4bit", training=True)
    assert missing is not None and missing[0] == "4-bit QLoRA training needs the bitsandbytes package."
    monkeypatch.setattr(loader, "bitsandbytes_version", lambda: (0, 45))
    assert loader.bitsandbytes_problem("cuda:0", "4bit") is None
    old_cpu = loader.bitsandbytes_problem("cpu", "4bit", training=True)
    assert old_cpu is not None and old_cpu[0].startswith("4-bit QLoRA training on the CPU")
    assert "0.48 or newer; 0.45 is installed" in old_cpu[0] and old_cpu[1] == "pip install -U bitsandbytes"
    monkeypatch.setattr(loader, "bitsandbytes_version", lambda: (0, 50))
    assert loader.bitsandbytes_problem("cpu", "4bit") is None
    mps = loader.bitsandbytes_problem("mps", "4bit")
    assert mps is not None and mps[0] == "4bit loading runs on an NVIDIA GPU or on the CPU, not on mps."


def test_qlora_estimate_counts_4_bit_weights() -> None:
    """A ChatGLM-6B-size model (6.2B parameters, 28 layers of 4096): in 16 bits its weights alone
    are 12.4 GB, over a 6 GB consumer card; with NF4 weights and checkpointing a LoRA step at 512
    tokens fits in 6 GB."""
    cfg = {"hidden_size": 4096, "num_hidden_layers": 28, "num_attention_heads": 32, "vocab_size": 65024}
    s = LoraSettings(model="m", data=[], name="n", rank=8, max_len=512, memory_limit_mb=6 * 1024)
    fp16 = estimate_memory(cfg, 6_200_000_000, s, "cuda", 2, checkpointing=True)
    nf4 = estimate_memory(cfg, 6_200_000_000, s, "cuda", 2, checkpointing=True, weight_bytes_per_param=0.55)
    assert not fp16.fits and fp16.parts["weights"] == 12_400_000_000
    assert nf4.parts["weights"] == int(6_200_000_000 * 0.55) and nf4.fits, nf4.to_dict()


@pytest.mark.parametrize("name", ["../x", "", "a/b", ".hidden"])
def test_bad_adapter_names(name: str) -> None:
    with pytest.raises(TrainingError):
        check_name(name)


@needs_bitsandbytes_cpu
def test_4_bit_layers_still_train_after_a_validation_pass(tiny_model_dir: Path) -> None:
    """The LoRA gradients through 4-bit base layers are the same before and after an eval-mode
    pass (bitsandbytes' CPU backend would repack the weights for inference and cut the gradient)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from bubble_desktop.core.train.lora import keep_4bit_weights_trainable

    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    base = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), dtype=torch.float32, quantization_config=quant, device_map={"": "cpu"}
    )
    keep_4bit_weights_trainable(base)
    cfg = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, cfg)
    ids = torch.randint(0, 400, (1, 24), generator=torch.Generator().manual_seed(0))

    def grads() -> Any:
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    before = grads()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    assert torch.equal(grads(), before)


def test_bitsandbytes_metadata_without_the_package_is_not_bitsandbytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frozen bundle can carry bitsandbytes' dist-info and leave the package out (bubble.spec
    excludes it): then 4-bit choices must say it is missing, not fail at import."""
    import importlib.util

    from bubble_desktop.core.llm import loader

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    assert loader.bitsandbytes_version() is None
    problem = loader.bitsandbytes_problem("cpu", "4bit", training=True)
    assert problem is not None and "needs the bitsandbytes package" in problem[0]
