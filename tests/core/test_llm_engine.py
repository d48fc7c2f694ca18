"""The streaming transformers engine on tiny random models: parity, seeds, stop, errors, threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bubble_desktop.core.errors import GenerationError, OutOfMemoryError
from bubble_desktop.core.llm.base import ChatMessage, ChatModel, LoadRequest
from bubble_desktop.core.llm.loader import load_model
from bubble_desktop.core.llm.transformers_backend import (
    IncrementalDecoder,
    TransformersChatModel,
    plain_prompt,
)
from bubble_desktop.core.settings import SamplingSettings

QUESTION = [ChatMessage("system", "You are terse."), ChatMessage("user", "What is the capital of France?")]


def greedy(n: int = 24, **kw: object) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, max_new_tokens=n, repetition_penalty=1.0, **kw)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> TransformersChatModel:
    model = load_model(LoadRequest(str(tiny_model_dir)))
    assert isinstance(model, TransformersChatModel)
    return model


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.fixtures.tiny_models import build_tiny_model

    out = {}
    for arch in ("qwen2", "gpt2", "bloom", "t5"):
        out[arch] = build_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
    out["alpaca"] = build_tiny_model(
        tmp_path_factory.mktemp("tiny-alpaca"), "llama", seed=1, chat_template=None
    )
    return out


def _generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bubble-generate"]


def test_model_satisfies_protocol(tiny: TransformersChatModel) -> None:
    assert isinstance(tiny, ChatModel)
    assert tiny.info.arch == "llama" and tiny.info.device == "cpu" and tiny.info.dtype == "float32"
    assert tiny.info.context_window == 2048


def test_greedy_equals_model_generate_token_for_token(tiny: TransformersChatModel) -> None:
    import torch

    sampling = greedy(32)
    gen = tiny.stream(QUESTION, sampling)
    text = gen.run()
    prompt = tiny.encode(QUESTION)
    kwargs = tiny.generate_kwargs(sampling, len(prompt))
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        raw = tiny.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    expected = raw[0, len(prompt) :].tolist()
    assert list(gen.token_ids) == expected
    assert text == tiny.tokenizer.decode(expected, skip_special_tokens=True)
    assert gen.stats is not None
    assert gen.stats.prompt_tokens == len(prompt)
    assert gen.stats.completion_tokens == len(expected)
    assert gen.stats.finish_reason in ("stop", "length")


def test_stats_report_length_and_speed(tiny: TransformersChatModel) -> None:
    gen = tiny.stream(QUESTION, greedy(12))
    chunks = list(gen)
    assert "".join(chunks) == gen.text
    s = gen.stats
    assert s is not None
    if s.completion_tokens == 12:
        assert s.finish_reason == "length"
    assert s.tokens_per_s is not None and s.tokens_per_s > 0
    assert s.total_s > 0


def test_fixed_seed_repeats_sampled_text(tiny: TransformersChatModel) -> None:
    sampling = SamplingSettings(temperature=1.5, top_p=1.0, top_k=0, max_new_tokens=24, seed=1234)
    a = tiny.stream(QUESTION, sampling)
    a.run()
    b = tiny.stream(QUESTION, sampling)
    b.run()
    assert a.token_ids == b.token_ids
    others = set()
    for seed in (1, 2, 3):
        g = tiny.stream(QUESTION, sampling.model_copy(update={"seed": seed}))
        g.run()
        others.add(g.token_ids)
    assert len(others | {a.token_ids}) > 1, "different seeds should give different samples"


def test_sampling_kwargs_map_settings(tiny: TransformersChatModel) -> None:
    kw = tiny.generate_kwargs(
        SamplingSettings(temperature=0.8, top_p=0.5, top_k=0, repetition_penalty=1.2, max_new_tokens=7)
    )
    assert kw["do_sample"] is True and kw["temperature"] == 0.8 and kw["top_p"] == 0.5
    assert kw["top_k"] == 0 and kw["max_new_tokens"] == 7
    # the penalty is our own processor over generated tokens, never generate()'s prompt-wide one
    assert "repetition_penalty" not in kw
    (penalty,) = kw["logits_processor"]
    assert penalty.penalty == 1.2 and penalty.last_n == 64
    assert tiny.generate_kwargs(greedy())["do_sample"] is False


def test_stop_event_stops_within_a_step_and_keeps_partial_text(tiny: TransformersChatModel) -> None:
    cancel = threading.Event()
    gen = tiny.stream_ids(tiny.encode(QUESTION), greedy(1500), cancel, min_new_tokens=1500)
    seen = 0
    stopped_at = 0.0
    for _ in gen:
        seen += 1
        if seen == 3:
            stopped_at = time.perf_counter()
            cancel.set()
    latency = time.perf_counter() - stopped_at
    assert gen.stats is not None
    assert gen.stats.finish_reason == "cancelled"
    assert gen.text  # the partial answer stays
    assert gen.stats.completion_tokens < 1500
    # set -> iteration over and thread joined: about one decode step (generous slack for a busy CI machine)
    step_s = gen.stats.total_s / gen.stats.completion_tokens
    assert latency < 0.5 + 5 * step_s, (latency, step_s)
    assert not _generate_threads()


def test_consumer_breaking_early_joins_the_thread(tiny: TransformersChatModel) -> None:
    gen = tiny.stream_ids(tiny.encode(QUESTION), greedy(1500), min_new_tokens=1500)
    for _ in gen:
        break
    assert not _generate_threads()
    assert gen.stats is not None and gen.stats.completion_tokens < 1500


def test_close_without_iterating_is_harmless(tiny: TransformersChatModel) -> None:
    gen = tiny.stream(QUESTION, greedy(5))
    gen.close()
    with tiny.stream(QUESTION, greedy(5)) as g2:
        next(iter(g2))
    assert not _generate_threads()


def _raise_on_call(model: TransformersChatModel, after: int, exc: BaseException):
    calls = {"n": 0}

    def hook(module: object, args: object, output: object) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise exc

    return model.model.register_forward_hook(hook)


def test_generation_error_finishes_with_error_and_keeps_partial(tiny: TransformersChatModel) -> None:
    handle = _raise_on_call(tiny, 4, RuntimeError("boom"))
    try:
        gen = tiny.stream(QUESTION, greedy(40))
        text = gen.run()
    finally:
        handle.remove()
    assert gen.stats is not None and gen.stats.finish_reason == "error"
    assert "boom" in (gen.stats.error or "")
    assert gen.stats.completion_tokens >= 3 and text == gen.text
    assert not _generate_threads()


def test_out_of_memory_becomes_user_facing(tiny: TransformersChatModel) -> None:
    import torch

    handle = _raise_on_call(tiny, 2, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    try:
        gen = tiny.stream(QUESTION, greedy(40))
        with pytest.raises(OutOfMemoryError) as err:
            gen.run()
    finally:
        handle.remove()
    assert err.value.hint
    assert gen.stats is not None and gen.stats.finish_reason == "error"


def test_prompt_longer_than_context_is_a_user_error(tiny: TransformersChatModel) -> None:
    with pytest.raises(GenerationError):
        tiny.generate_kwargs(greedy(), prompt_tokens=5000)
    kw = tiny.generate_kwargs(greedy(500), prompt_tokens=2000)
    assert kw["max_new_tokens"] == 48  # capped to what is left of the window


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "bloom", "t5", "alpaca"])
def test_each_architecture_streams(arch: str, arch_dirs: dict[str, Path]) -> None:
    model = load_model(LoadRequest(str(arch_dirs[arch])))
    try:
        assert isinstance(model, TransformersChatModel)
        assert model.is_seq2seq == (arch == "t5")
        gen = model.stream(QUESTION, greedy(8))
        gen.run()
        assert gen.stats is not None and 1 <= gen.stats.completion_tokens <= 8
        if arch == "alpaca":
            assert not model.has_chat_template
            assert model.render_prompt(QUESTION).endswith("### Response:\n")
        else:
            assert "<|im_start|>assistant" in model.render_prompt(QUESTION)
    finally:
        model.unload()
    assert model.model is None


def test_plain_prompt_format() -> None:
    text = plain_prompt(
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello"),
            ChatMessage("user", "Bye"),
        ]
    )
    assert text == (
        "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello\n\n"
        "### Instruction:\nBye\n\n### Response:\n"
    )


def test_incremental_decoder_matches_full_decode(tiny: TransformersChatModel) -> None:
    ids = tiny.tokenizer("北京是中国的首都。 Hello, world! def add(a, b)", add_special_tokens=False)[
        "input_ids"
    ]
    dec = IncrementalDecoder(tiny.tokenizer)
    pieces = [dec.add([i]) for i in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == tiny.tokenizer.decode(ids, skip_special_tokens=True)


def test_unload_frees_the_weights(tiny_model_dir: Path) -> None:
    import gc
    import weakref

    model = load_model(LoadRequest(str(tiny_model_dir)))
    assert isinstance(model, TransformersChatModel)
    model.stream(QUESTION, greedy(3)).run()
    ref = weakref.ref(model.model)
    model.unload()
    gc.collect()
    assert ref() is None, "the torch module is still referenced after unload"
    with pytest.raises(GenerationError):
        model.stream(QUESTION, greedy(3))


def test_too_long_prompt_fails_at_stream_call(tiny_model_dir: Path) -> None:
    model = load_model(LoadRequest(str(tiny_model_dir), context_window=16))
    try:
        with pytest.raises(GenerationError, match="context window"):
            model.stream(QUESTION, greedy(4))
        assert not _generate_threads()
    finally:
        model.unload()
