"""Loading models: bad inputs become clear user errors, hub ids stay offline, LoRA applies."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from bubble_desktop.core.errors import ModelError, ModelNotFoundError, UnsupportedModelError, UserFacingError
from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.loader import from_settings, load_model, resolve_device, resolve_dtype
from bubble_desktop.core.llm.registry import RECOMMENDED, recommend
from bubble_desktop.core.llm.transformers_backend import TransformersChatModel
from bubble_desktop.core.settings import ModelSettings, SamplingSettings
from tests.fixtures.markers import needs_bitsandbytes_cpu

QUESTION = [ChatMessage("user", "What is the capital of France?")]
GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=16, repetition_penalty=1.0)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist") as err:
        load_model(LoadRequest(str(tmp_path / "nope")))
    assert err.value.hint


def test_empty_path() -> None:
    with pytest.raises(ModelNotFoundError, match="No model"):
        load_model(LoadRequest(""))


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(LoadRequest(str(tmp_path)))


def test_folder_with_only_a_gguf_says_import(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="GGUF") as err:
        load_model(LoadRequest(str(tmp_path)))
    assert "import-gguf" in err.value.hint


def test_gguf_file_given_directly_is_checked_before_llama_cpp(tmp_path: Path) -> None:
    """A .gguf path opens directly through llama.cpp now (issue 10); a file cut after its magic bytes
    is refused by the header check with what to do, before llama.cpp sees it."""
    f = tmp_path / "model.Q4_0.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="damaged or incomplete") as err:
        load_model(LoadRequest(str(f)))
    assert "download" in err.value.hint


def test_lora_folder_given_as_model(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="LoRA"):
        load_model(LoadRequest(str(tmp_path)))


@pytest.mark.parametrize("config", [{"model_type": "no-such-arch"}, {"model_type": "vit"}, {}, []])
def test_unsupported_architectures(tmp_path: Path, config: object) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserFacingError):
        load_model(LoadRequest(str(tmp_path)))


def test_unknown_and_encoder_only_types_are_unsupported(tmp_path: Path) -> None:
    for model_type in ("no-such-arch", "vit"):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        with pytest.raises(UnsupportedModelError):
            load_model(LoadRequest(str(tmp_path)))


def test_corrupt_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(LoadRequest(str(tmp_path)))


def test_folder_without_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ModelNotFoundError):
        load_model(LoadRequest(str(tmp_path)))


def test_hub_id_not_downloaded_fails_fast_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # even with the hub reachable in principle, nothing is fetched without an explicit download
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="not downloaded"):
        load_model(LoadRequest("Qwen/Qwen2.5-0.5B-Instruct"))
    assert time.perf_counter() - t0 < 1.0


def test_imported_model_name_resolves_under_models_dir(tiny_model_dir: Path, bubble_home: Path) -> None:
    from bubble_desktop.core.paths import Paths

    target = Paths.default().models_dir / "tiny"
    shutil.copytree(tiny_model_dir, target)
    model = load_model(LoadRequest("tiny"))
    assert model.info.path == str(target)
    model.unload()


def test_remote_code_models_go_to_the_chatglm_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "chatglm", "auto_map": {"AutoModel": "x.Y"}})
    )
    seen: list[LoadRequest] = []
    sentinel = object()

    def fake_loader(request: LoadRequest, progress: object) -> object:
        seen.append(request)
        return sentinel

    import bubble_desktop.core.llm.chatglm as chatglm_pkg

    monkeypatch.setattr(chatglm_pkg, "load_remote_code_model", fake_loader, raising=False)
    request = LoadRequest(str(tmp_path), trust_remote_code=True)
    assert load_model(request) is sentinel
    assert seen == [request]


def test_progress_is_reported(tiny_model_dir: Path) -> None:
    steps: list[tuple[float, str]] = []
    model = load_model(LoadRequest(str(tiny_model_dir)), lambda f, what: steps.append((f, what)))
    model.unload()
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_device_and_dtype_resolution() -> None:
    import torch

    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA"):
            resolve_device("cuda")


def test_quantization_without_bitsandbytes_says_what_to_install(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bubble_desktop.core.llm import loader

    monkeypatch.setattr(loader, "bitsandbytes_version", lambda: None)
    with pytest.raises(ModelError, match="needs the bitsandbytes package") as err:
        load_model(LoadRequest(str(tiny_model_dir), quantization="4bit"))
    assert err.value.hint == "pip install bitsandbytes"
    with pytest.raises(ModelError, match="Unknown quantization"):
        load_model(LoadRequest(str(tiny_model_dir), quantization="3bit"))


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@needs_bitsandbytes_cpu
def test_quantized_weights_load_and_answer_on_the_cpu(tiny_model_dir: Path, quantization: str) -> None:
    """bitsandbytes' CPU backend (0.48+): the weights load in 4 or 8 bits on the CPU and answer."""
    model = load_model(LoadRequest(str(tiny_model_dir), device="cpu", quantization=quantization))
    assert isinstance(model, TransformersChatModel)
    assert model.info.dtype == quantization and model.info.device == "cpu"
    layer = type(model.model.model.layers[0].self_attn.q_proj).__name__
    assert layer == ("Linear4bit" if quantization == "4bit" else "Linear8bitLt")
    run = model.stream(QUESTION, GREEDY)
    run.run()
    assert run.token_ids and run.stats.completion_tokens == len(run.token_ids)
    model.unload()


def test_chosen_dtype_is_used(tiny_model_dir: Path) -> None:
    model = load_model(LoadRequest(str(tiny_model_dir), dtype="bfloat16", context_window=256))
    assert model.info.dtype == "bfloat16" and model.info.context_window == 256
    model.unload()


def test_from_settings() -> None:
    s = ModelSettings(
        path="/m", device="cpu", dtype="float16", quantization="8bit", lora_path="/l", context_window=99
    )
    r = from_settings(s, trust_remote_code=True)
    assert (
        r.path,
        r.device,
        r.dtype,
        r.quantization,
        r.lora_path,
        r.context_window,
        r.trust_remote_code,
    ) == ("/m", "cpu", "float16", "8bit", "/l", 99, True)


@pytest.fixture(scope="module")
def tiny_lora(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(7)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():  # make the adapter change the output visibly
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(20.0)
    out = tmp_path_factory.mktemp("tiny-lora")
    peft_model.save_pretrained(out)
    return out


def test_lora_adapter_is_applied(tiny_model_dir: Path, tiny_lora: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = load_model(LoadRequest(str(tiny_model_dir)))
    with_lora = load_model(LoadRequest(str(tiny_model_dir), lora_path=str(tiny_lora)))
    assert isinstance(with_lora, TransformersChatModel) and isinstance(plain, TransformersChatModel)
    assert with_lora.info.lora == str(tiny_lora)
    a = plain.stream(QUESTION, GREEDY)
    a.run()
    b = with_lora.stream(QUESTION, GREEDY)
    b.run()
    assert a.token_ids != b.token_ids
    # the merged adapter answers exactly as peft's own (unmerged) model does
    ref = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(tiny_lora)
    ).eval()
    prompt = with_lora.encode(QUESTION)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        raw = ref.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            **with_lora.generate_kwargs(GREEDY, len(prompt)),
        )
    assert list(b.token_ids) == raw[0, len(prompt) :].tolist()
    plain.unload()
    with_lora.unload()


def test_bad_lora_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="LoRA"):
        load_model(LoadRequest(str(tiny_model_dir), lora_path=str(tmp_path)))


def test_registry_lists_the_recommended_models() -> None:
    names = {m.name for m in RECOMMENDED}
    assert {
        "ChatGLM-6B-int4",
        "Qwen2.5-0.5B-Instruct",
        "SmolLM2-135M-Instruct",
        "Llama-3.2-1B-Instruct",
    } <= names
    glm = next(m for m in RECOMMENDED if m.name == "ChatGLM-6B-int4")
    assert glm.memory == "6 GB VRAM / ~8 GB RAM" and glm.remote_code
    small = recommend(ram_gb=2.0, language="zh")
    assert small and small[0].name == "Qwen2.5-0.5B-Instruct"
    assert all(m.min_ram_gb <= 2.0 for m in small)


def test_core_llm_imports_without_torch() -> None:
    import subprocess

    code = (
        "import sys; import bubble_desktop.core.llm.loader, bubble_desktop.core.llm.history, "
        "bubble_desktop.core.llm.transformers_backend, bubble_desktop.core.llm.gguf_import, "
        "bubble_desktop.core.llm.registry; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
