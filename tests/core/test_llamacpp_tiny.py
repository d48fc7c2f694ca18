"""The llama.cpp backend on a tiny GGUF the tests write themselves (fast suite, no SmolLM2 needed)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from bubble_desktop.core.errors import OutOfMemoryError, UserFacingError
from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.llamacpp_backend import inspect_gguf
from bubble_desktop.core.llm.llamacpp_child import GgufFacts, check_memory
from bubble_desktop.core.llm.loader import load_model
from bubble_desktop.core.settings import SamplingSettings

HELLO = [ChatMessage("system", "You are helpful."), ChatMessage("user", "Hello, how are you today?")]


def sampling(**kw: object) -> SamplingSettings:
    return SamplingSettings().model_copy(update={"temperature": 0.0, "max_new_tokens": 24, **kw})


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path):
    model = load_model(LoadRequest(path=str(tiny_gguf), device="cpu"))
    yield model
    model.unload()


def test_the_header_is_read_without_loading(tiny_gguf: Path) -> None:
    facts = inspect_gguf(tiny_gguf)
    assert (facts.arch, facts.n_layers, facts.n_embd, facts.n_head, facts.n_head_kv) == ("llama", 2, 64, 4, 2)
    assert facts.has_chat_template and facts.context_length == 2048


def test_streams_text_with_stats_from_llama_cpp(tiny) -> None:
    gen = tiny.stream(HELLO, sampling())
    chunks = list(gen)
    assert len(chunks) > 1 and "".join(chunks) == gen.text
    st = gen.stats
    assert st is not None and st.finish_reason == "length" and st.completion_tokens == 24
    assert st.prompt_tokens > 10 and st.ttft_s is not None and st.tokens_per_s
    assert tiny.info.dtype == "gguf" and tiny.status_text.startswith("CPU · ")


def test_greedy_and_fixed_seed_repeat_and_other_seeds_differ(tiny) -> None:
    assert tiny.stream(HELLO, sampling()).run() == tiny.stream(HELLO, sampling()).run()
    hot = {"temperature": 1.5, "top_k": 0, "top_p": 1.0, "max_new_tokens": 32}
    a = tiny.stream(HELLO, sampling(seed=7, **hot)).run()
    assert a == tiny.stream(HELLO, sampling(seed=7, **hot)).run()
    others = {tiny.stream(HELLO, sampling(seed=s, **hot)).run() for s in (1, 2, 3)}
    assert others - {a}, "different seeds should give different samples"


def test_a_stop_as_the_answer_ends_does_not_hang(tiny) -> None:
    """Stop pressed after the last token, with the end already on its way: the stream ends at once
    (it once read the end as 'stopped', then waited for a second end that never came)."""
    for n_tokens in (2, 3, 6, 12):
        chunks = sum(1 for _ in tiny.stream(HELLO, sampling(max_new_tokens=n_tokens)))  # greedy: repeatable
        cancel = threading.Event()
        gen = tiny.stream(HELLO, sampling(max_new_tokens=n_tokens), cancel)
        result: list[object] = []

        def consume(gen=gen, cancel=cancel, last=chunks, result=result) -> None:
            for i, _ in enumerate(gen, 1):
                if i == last:
                    cancel.set()  # the last chunk: only the end is left in the pipe
            result.append(gen.stats)

        worker = threading.Thread(target=consume, daemon=True)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), f"the stream hung after a stop at its end ({n_tokens} tokens)"
        assert chunks and result and result[0] is not None
    assert tiny.stream(HELLO, sampling(max_new_tokens=4)).run() is not None  # the model is free


def test_chat_template_comes_from_the_file(tiny) -> None:
    # the template wraps each message in <|im_start|>role ... <|im_end|>: more tokens with a system prompt
    assert tiny.count_tokens(HELLO) > tiny.count_tokens(HELLO[1:]) > 5


def test_stop_within_one_decode_step(tiny) -> None:
    cancel = threading.Event()
    gen = tiny.stream(HELLO, sampling(max_new_tokens=1500), cancel)
    n = 0
    for _ in gen:
        n += 1
        if n == 3:
            cancel.set()
    assert n <= 4, n
    assert gen.stats is not None and gen.stats.finish_reason == "cancelled"
    assert gen.stats.completion_tokens <= 5
    # the model is free again at once
    assert tiny.stream(HELLO, sampling(max_new_tokens=4)).run() is not None


def test_consumer_that_walks_away_frees_the_model(tiny) -> None:
    gen = tiny.stream(HELLO, sampling(max_new_tokens=1500))
    it = iter(gen)
    next(it)
    gen.close()
    out = tiny.stream(HELLO, sampling(max_new_tokens=4))
    out.run()
    assert out.stats is not None and out.stats.completion_tokens == 4


def test_unloaded_model_says_so(tiny_gguf: Path) -> None:
    model = load_model(LoadRequest(path=str(tiny_gguf), device="cpu"))
    model.unload()
    with pytest.raises(UserFacingError, match="unloaded"):
        model.stream(HELLO, sampling())


def _load(path: Path) -> None:
    load_model(LoadRequest(path=str(path), device="cpu"))


def test_truncated_file_is_refused_before_llama_cpp(tmp_path: Path, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    for cut in (8, len(data) // 10, len(data) // 2, len(data) - 100):
        f = tmp_path / f"cut{cut}.gguf"
        f.write_bytes(data[:cut])
        with pytest.raises(UserFacingError) as err:
            _load(f)
        assert "download" in (err.value.hint or "").lower() or "damaged" in str(err.value), str(err.value)


def test_non_gguf_named_gguf_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.gguf"
    f.write_text("hello\n" * 100)
    with pytest.raises(UserFacingError, match="not a GGUF"):
        _load(f)
    with pytest.raises(UserFacingError, match="not there"):
        _load(tmp_path / "gone" / "model.gguf")


def test_unknown_architecture_is_refused(tmp_path: Path, tiny_gguf: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    key = b"general.architecture"
    i = data.index(key) + len(key)
    # value: u32 type (8 = string), u64 length, bytes "llama" -> "llamb" (same length, unknown name)
    (vtype,) = struct.unpack_from("<I", data, i)
    assert vtype == 8
    (n,) = struct.unpack_from("<Q", data, i + 4)
    start = i + 12
    assert bytes(data[start : start + n]) == b"llama"
    data[start : start + n] = b"llamb"
    f = tmp_path / "odd.gguf"
    f.write_bytes(bytes(data))
    with pytest.raises(UserFacingError, match="architecture"):
        _load(f)


def test_memory_guard_refuses_with_a_smaller_context_to_try(tiny_gguf: Path) -> None:
    facts = inspect_gguf(tiny_gguf)
    huge = GgufFacts(**{**facts.__dict__, "file_size": 2**50})
    with pytest.raises(OutOfMemoryError) as err:
        check_memory(huge, 8192)
    assert "context window" in (err.value.hint or "") and "quantization" in (err.value.hint or "")
    check_memory(facts, 2048)  # the tiny one fits


def test_llama_cpp_runs_in_a_child_that_unload_ends(tiny_gguf: Path) -> None:
    """llama.cpp holds the GIL while it loads, so it runs in a child process; unload ends it."""
    import os

    model = load_model(LoadRequest(path=str(tiny_gguf), device="cpu"))
    proc = model.process
    assert proc.is_alive() and proc.pid != os.getpid()
    assert model.peak_rss() > model.facts.file_size  # the weights are mapped over there
    model.unload()
    assert not proc.is_alive()


def test_a_crashed_child_is_a_clear_error_and_the_app_goes_on(tiny_gguf: Path) -> None:
    model = load_model(LoadRequest(path=str(tiny_gguf), device="cpu"))
    model.process.kill()
    model.process.join(5)
    with pytest.raises(UserFacingError) as err:
        model.stream(HELLO, sampling()).run()
    assert "stopped unexpectedly" in err.value.message and "Reload" in (err.value.hint or "")
    with pytest.raises(UserFacingError, match="unloaded"):  # and stays refused, without hanging
        model.stream(HELLO, sampling())
    model.unload()
    again = load_model(LoadRequest(path=str(tiny_gguf), device="cpu"))  # a reload works
    assert again.stream(HELLO, sampling(max_new_tokens=3)).run() is not None
    again.unload()


def test_fast_header_reader_agrees_with_the_gguf_package(tiny_gguf: Path) -> None:
    from gguf import GGUFReader

    from bubble_desktop.core.llm.gguf_header import LongArray, read_header

    ours = read_header(tiny_gguf)
    ref = GGUFReader(str(tiny_gguf), "r")
    assert list(ours.tensors) == [(t.name, int(t.data_offset), int(t.n_bytes)) for t in ref.tensors]
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.metadata[key]
        if isinstance(value, LongArray):
            assert value.length == len(field.contents())
        else:
            assert value == field.contents(), key
    assert ours.data_end == tiny_gguf.stat().st_size


def test_cli_options_set_the_context_window_and_threads(tiny_gguf: Path) -> None:
    """`bubble-cli ask/serve --context-window N --threads N` reach llama.cpp (the memory guard's hint
    names a smaller context; a command-line user can now try it without editing settings)."""
    import argparse

    from bubble_desktop.commands.ask import add_load_args, load_for_args
    from bubble_desktop.core.settings import Settings

    p = argparse.ArgumentParser()
    p.add_argument("--model")
    add_load_args(p)
    args = p.parse_args(["--model", str(tiny_gguf), "--context-window", "512", "--threads", "1"])
    model = load_for_args(args, Settings())
    try:
        assert model.info.context_window == 512
        assert model.status_text == "CPU · 1 thread", model.status_text
        gen = model.stream(HELLO, sampling(max_new_tokens=4))
        assert gen.run() and gen.stats and gen.stats.completion_tokens == 4
    finally:
        model.unload()


def test_a_file_without_a_chat_template_answers_in_the_plain_format(tmp_path: Path) -> None:
    """No template in the GGUF: the plain instruction format goes to llama.cpp as it is (a chat request
    would have wrapped it in a template llama.cpp picks). Greedy, our answer equals a bare llama.cpp
    completion of exactly that text, so nothing was added around it; the prompt cache and the token
    count take the same path."""
    import xllamacpp

    from bubble_desktop.core.llm.transformers_backend import plain_prompt
    from tests.fixtures.tiny_models import build_tiny_gguf

    gguf = build_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    model = load_model(LoadRequest(path=str(gguf), device="cpu", extra={"threads": 1}))
    try:
        assert not model.facts.has_chat_template  # type: ignore[attr-defined]
        plain = sampling(max_new_tokens=12, repetition_penalty=1.0)  # the bare call's sampling
        gen = model.stream(HELLO, plain)
        chunks = list(gen)
        assert len(chunks) > 1 and gen.stats and gen.stats.completion_tokens == 12
        prompt_tokens = gen.stats.prompt_tokens
        assert model.count_tokens(HELLO) == prompt_tokens
        again = model.stream(HELLO, plain)
        assert again.run() == gen.text and again.timings.get("cache_n", 0) > 0  # the prompt cache
    finally:
        model.unload()

    p = xllamacpp.CommonParams()
    p.model.path = str(gguf)
    p.n_ctx = 2048
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    p.warmup = False
    p.verbosity = 0
    bare = xllamacpp.Server(p)
    out = bare.handle_completions(
        {"prompt": plain_prompt(HELLO), "max_tokens": 12, "temperature": 0.0, "top_k": 1, "stream": False}
    )
    assert out["choices"][0]["text"] == gen.text
    assert out["usage"]["prompt_tokens"] == prompt_tokens


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ m.content }}",  # unclosed block
        "{{ raise_exception('Only user and assistant roles are supported!') }}",
        "{% for m in messages %}{{ m.content | frobnicate }}{% endfor %}",  # a filter llama.cpp lacks
    ],
    ids=["unclosed", "raises", "unknown-filter"],
)
def test_a_chat_template_llama_cpp_cannot_use_falls_back_to_the_plain_format(
    tmp_path: Path, template: str
) -> None:
    """llama.cpp refused to start on such a file ('Failed to init server, please check the input
    params', and our hint said to try a smaller context): it now loads, and answers in the plain
    format as a file without a template does."""
    from tests.fixtures.tiny_models import build_tiny_gguf

    gguf = build_tiny_gguf(tmp_path / "odd.gguf", chat_template=template)
    assert inspect_gguf(gguf).has_chat_template
    model = load_model(LoadRequest(path=str(gguf), device="cpu", extra={"threads": 1}))
    try:
        assert not model.facts.has_chat_template  # type: ignore[attr-defined]
        (notice,) = model.info.notices  # the user is told, not left to wonder why answers are odd
        assert "odd.gguf" in notice and "chat template" in notice
        assert "prompt" in model.request(HELLO, sampling())  # type: ignore[attr-defined]
        gen = model.stream(HELLO, sampling(max_new_tokens=6))
        assert gen.run() and gen.stats and gen.stats.completion_tokens == 6
    finally:
        model.unload()


def test_a_prompt_longer_than_the_context_says_so_plainly(tiny_gguf: Path) -> None:
    """llama.cpp's refusal came through as its raw error object ("{'code': 400, 'message': ...")."""
    model = load_model(
        LoadRequest(path=str(tiny_gguf), device="cpu", context_window=256, extra={"threads": 1})
    )
    try:
        with pytest.raises(UserFacingError) as info:
            model.stream([ChatMessage("user", "word " * 1500)], sampling(max_new_tokens=4)).run()
        assert "does not fit the model's context window of 256 tokens" in info.value.message
        assert "{" not in info.value.message and "context window" in (info.value.hint or "")
        assert model.stream(HELLO, sampling(max_new_tokens=4)).run()  # and the model goes on
    finally:
        model.unload()
