"""ChatGLM P-tuning v2 checkpoints (THUDM's ptuning/ output) load as an adapter, on the ChatGLM-like fixture.

The checkpoint is saved as THUDM's trainer saves it (only ``transformer.prefix_encoder.*`` in
pytorch_model.bin, the config with ``pre_seq_len``); the answers are checked against the plain-torch
reference with the prefix keys/values and against the model built and loaded by hand as THUDM's README does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.errors import ModelNotFoundError, UnsupportedModelError
from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.chatglm import ChatGLMChatModel, load_remote_code_model
from bubble_desktop.core.llm.loader import load_model
from bubble_desktop.core.settings import SamplingSettings
from tests.fixtures.chatglm_like.build import build_chatglm_like, reference_greedy, save_ptuning_checkpoint

GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=8, repetition_penalty=1.0, system_prompt="")
QUERY = "你好"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chatglm_like(tmp_path_factory.mktemp("chatglm-like") / "tuples", "tuples")


def _load(base: Path, adapter: Path | None = None) -> ChatGLMChatModel:
    return load_remote_code_model(
        LoadRequest(
            path=str(base), trust_remote_code=True, device="cpu", lora_path=str(adapter) if adapter else ""
        )
    )


def _answer(model: ChatGLMChatModel) -> str:
    generation = model.stream([ChatMessage("user", QUERY)], GREEDY)
    return "".join(generation)


def _expected(model: ChatGLMChatModel, base: Path, n_forwards: int, prefix: dict[str, Any] | None) -> str:
    ids = list(model.tokenizer([QUERY])["input_ids"][0])
    out = reference_greedy(base, ids, GREEDY.max_new_tokens, prefix=prefix)
    # ChatGLM's stream_generate stops before yielding the token that hits the limit
    return str(model.tokenizer.decode(out))[: n_forwards - (len(out) == GREEDY.max_new_tokens)]


@pytest.mark.parametrize("projection", [False, True], ids=["embedding", "prefix_projection"])
def test_ptuning_checkpoint_changes_the_answer_as_the_reference_does(
    base: Path, tmp_path: Path, projection: bool
) -> None:
    import torch

    ckpt = save_ptuning_checkpoint(
        base, tmp_path / "checkpoint-10", pre_seq_len=4, prefix_projection=projection
    )
    state = torch.load(str(ckpt / "pytorch_model.bin"))
    assert state and all(k.startswith("transformer.prefix_encoder.") for k in state)

    plain = _load(base)
    plain.model.forward_lengths.clear()
    plain_answer = _answer(plain)
    assert plain_answer == _expected(plain, base, len(plain.model.forward_lengths), None)

    tuned = _load(base, ckpt)
    assert tuned.info.lora == str(ckpt)
    tuned.model.forward_lengths.clear()
    tuned_answer = _answer(tuned)
    assert tuned_answer != plain_answer
    assert tuned_answer == _expected(tuned, base, len(tuned.model.forward_lengths), state)

    # by hand, as THUDM's README: the config with pre_seq_len, the model, the stripped state dict
    from bubble_desktop.core.llm.chatglm.compat import resolve_compat_classes, retie_output_embeddings

    cfg = {
        "AutoConfig": "configuration_chatglm.ChatGLMConfig",
        "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    }
    config_cls, _, model_cls = resolve_compat_classes(str(base), cfg, "tokenization_chatglm.ChatGLMTokenizer")
    config = config_cls.from_pretrained(str(base), pre_seq_len=4, prefix_projection=projection)
    by_hand = model_cls.from_pretrained(str(base), config=config)
    retie_output_embeddings(by_hand)  # the transformers 4 tie (tested in test_chatglm_compat)
    by_hand = by_hand.float().eval()
    prefix = {k.removeprefix("transformer.prefix_encoder."): v for k, v in state.items()}
    by_hand.transformer.prefix_encoder.load_state_dict(prefix)
    # ChatGLM's plain-attribute prefix_tokens: built on the meta device by transformers 5, so set here
    # as ChatGLM's __init__ does on transformers 4
    by_hand.transformer.prefix_tokens = torch.arange(4).long()
    ids = torch.tensor([list(tuned.tokenizer([QUERY])["input_ids"][0])])
    with torch.no_grad():
        mine = tuned.model(ids, use_cache=False).logits
        theirs = by_hand(ids, use_cache=False).logits
        untuned = plain.model(ids, use_cache=False).logits
    assert torch.allclose(mine, theirs, atol=1e-5)
    assert not torch.allclose(mine, untuned, atol=1e-3)
    plain.unload()
    tuned.unload()


def test_the_model_loader_passes_the_checkpoint_on(base: Path, tmp_path: Path) -> None:
    ckpt = save_ptuning_checkpoint(base, tmp_path / "ckpt")
    model = load_model(LoadRequest(path=str(base), trust_remote_code=True, device="cpu", lora_path=str(ckpt)))
    assert isinstance(model, ChatGLMChatModel)
    assert model.model.transformer.pre_seq_len == 4
    model.unload()


def test_a_folder_that_is_neither_adapter_kind(base: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "chatglm"}', encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="neither a LoRA adapter .* nor a P-tuning v2") as err:
        _load(base, tmp_path)
    assert err.value.hint
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        _load(base, tmp_path / "missing")
    ckpt = save_ptuning_checkpoint(base, tmp_path / "no-weights")
    (ckpt / "pytorch_model.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="has no pytorch_model.bin"):
        _load(base, ckpt)


def test_ptuning_for_a_model_without_a_prefix_encoder(
    base: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ckpt = save_ptuning_checkpoint(base, tmp_path / "ckpt")
    with pytest.raises(UnsupportedModelError, match="needs a model with a prefix encoder"):
        load_model(LoadRequest(str(tiny_model_dir), lora_path=str(ckpt)))
    # a ChatGLM whose code has no pre_seq_len (its config takes the value, its model ignores it)
    old = build_chatglm_like(tmp_path / "old", "tuples")
    modeling = old / "modeling_chatglm.py"
    text = modeling.read_text(encoding="utf-8")
    modeling.write_text(
        text.replace('getattr(config, "pre_seq_len", None)', "None").replace(
            "self.prefix_encoder = PrefixEncoder(config)", "pass"
        ),
        encoding="utf-8",
    )
    with pytest.raises(UnsupportedModelError, match="no prefix encoder"):
        _load(old, ckpt)


def test_a_lora_adapter_applies_on_the_chatglm_path(base: Path, tmp_path: Path) -> None:
    """lora_path was ignored for ChatGLM's own code; a peft adapter now changes its answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    source = _load(base)
    peft_model = get_peft_model(source.model, LoraConfig(r=4, lora_alpha=8, target_modules=["qkv"]))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op adapter): make it do something
                param.copy_(torch.randn(param.shape, generator=gen))
    peft_model.save_pretrained(str(tmp_path / "lora"))
    ids = torch.tensor([list(source.tokenizer([QUERY])["input_ids"][0])])
    with torch.no_grad():
        expected = peft_model(input_ids=ids, use_cache=False).logits

    plain = _load(base)
    tuned = _load(base, tmp_path / "lora")
    assert tuned.info.lora == str(tmp_path / "lora")
    with torch.no_grad():
        got = tuned.model(ids, use_cache=False).logits
        untuned = plain.model(ids, use_cache=False).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, untuned, atol=1e-3)
    assert _answer(tuned) != _answer(plain)
    for m in (source, plain, tuned):
        m.unload()


def test_an_adapter_is_found_by_the_name_it_was_trained_under(bubble_home: Path, tmp_path: Path) -> None:
    from bubble_desktop.core.llm.adapters import resolve_adapter_path

    trained = bubble_home / "models" / "lora" / "facts"
    trained.mkdir(parents=True)
    assert resolve_adapter_path("facts") == str(trained)
    folder = tmp_path / "facts"  # a folder given by path wins over the name
    folder.mkdir()
    assert resolve_adapter_path(str(folder)) == str(folder)
    assert resolve_adapter_path("nothing-by-that-name") == "nothing-by-that-name"  # the loader says so
    assert resolve_adapter_path("models/facts") == "models/facts"
