"""ChatGLM remote code on the pinned transformers: compat layer + adapter, on ChatGLM-like fixtures.

The fixtures (tests/fixtures/chatglm_like) are remote-code folders written for these tests that
reproduce the patterns that break THUDM's files on transformers 5.x; they load through the real
``trust_remote_code`` machinery (get_class_from_dynamic_module), with tiny random weights.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.errors import ModelError, RemoteCodeConsentRequired, UnsupportedModelError
from bubble_desktop.core.llm.base import ChatMessage, ChatModel, LoadRequest
from bubble_desktop.core.llm.chatglm import (
    ChatGLMChatModel,
    CpmKernelsMissingError,
    GccMissingError,
    check_c_compiler,
    load_remote_code_model,
)
from bubble_desktop.core.llm.chatglm.model import check_cpm_kernels
from bubble_desktop.core.settings import SamplingSettings
from tests.fixtures.chatglm_like.build import build_chatglm_like, reference_greedy

GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=10, repetition_penalty=1.0, system_prompt="")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chatglm-like")
    return {fmt: build_chatglm_like(root / fmt, fmt) for fmt in ("tuples", "roles")}


@pytest.fixture(scope="module")
def models(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, ChatGLMChatModel]:
    with pytest.MonkeyPatch.context() as mp:  # module scope runs before the per-test BUBBLE_HOME
        mp.setenv("BUBBLE_HOME", str(tmp_path_factory.mktemp("home")))
        loaded = {
            fmt: load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True, device="cpu"))
            for fmt, d in folders.items()
        }
    yield loaded
    for m in loaded.values():
        m.unload()


def _prompt_ids(model: ChatGLMChatModel, fmt: str, query: str, history: list[Any]) -> list[int]:
    """The ids the fixture's own stream_chat feeds the model (its prompt format, rebuilt here)."""
    tok = model.tokenizer
    if fmt == "roles":
        return [int(i) for i in tok.build_chat_input(query, history=history)["input_ids"][0]]
    prompt = query
    if history:
        prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
        prompt += f"[Round {len(history)}]\n问：{query}\n答："
    return list(tok([prompt])["input_ids"][0])


def test_plain_transformers_breaks_on_the_fixtures(folders: dict[str, Path]) -> None:
    """The fixtures really reproduce the breaks: unpatched, this transformers cannot use them."""
    from transformers import AutoModel, AutoTokenizer

    with pytest.raises(
        (TypeError, AttributeError)
    ):  # base __init__ reads the vocab before sp_tokenizer exists
        AutoTokenizer.from_pretrained(str(folders["tuples"]), trust_remote_code=True)
    tok = AutoTokenizer.from_pretrained(str(folders["roles"]), trust_remote_code=True)
    with pytest.raises(TypeError, match="padding_side"):
        tok(["hi"])
    with pytest.raises(AttributeError):  # batch_encode_plus is gone in 5.x
        tok.build_chat_input("hi")
    with pytest.raises(AttributeError):  # never calls post_init(): no all_tied_weights_keys
        AutoModel.from_pretrained(str(folders["roles"]), trust_remote_code=True)


@pytest.mark.parametrize("fmt", ["tuples", "roles"])
def test_two_turns_streamed_greedy_equal_the_reference(
    models: dict[str, ChatGLMChatModel], folders: dict[str, Path], fmt: str
) -> None:
    model = models[fmt]
    messages: list[ChatMessage] = []
    history: list[Any] = []
    for query in ("你好", "Who are you?"):
        messages.append(ChatMessage("user", query))
        ids = _prompt_ids(model, fmt, query, history)
        assert model.count_tokens(messages) == len(ids)
        model.model.forward_lengths.clear()
        generation = model.stream(messages, GREEDY)
        chunks = list(generation)
        assert generation.stats is not None and generation.stats.finish_reason in ("stop", "length")
        expected = model.tokenizer.decode(reference_greedy(folders[fmt], ids, GREEDY.max_new_tokens))
        # ChatGLM's stream_generate stops before yielding the token that hits the limit
        n_yielded = len(model.model.forward_lengths) - (generation.stats.finish_reason == "length")
        assert "".join(chunks) == expected[:n_yielded]
        assert chunks or query != "你好"  # the first answer is visible text (later ones may be blanks)
        # the KV cache is carried from step to step: only the first forward sees the prompt
        assert model.model.forward_lengths[0] == len(ids)
        assert set(model.model.forward_lengths[1:]) <= {1}
        answer = "".join(chunks)
        messages.append(ChatMessage("assistant", answer))
        if fmt == "roles":
            history += [
                {"role": "user", "content": query},
                {"role": "assistant", "metadata": "", "content": answer},
            ]
        else:
            history.append((query, answer))


def test_output_layer_is_retied_as_on_transformers_4(models: dict[str, ChatGLMChatModel]) -> None:
    tied = models["tuples"].model
    assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight
    untied = models["roles"].model  # tie_word_embeddings=false in its config (as ChatGLM2/3)
    assert untied.get_output_embeddings().weight is not untied.get_input_embeddings().weight


def test_model_info_and_protocol(models: dict[str, ChatGLMChatModel]) -> None:
    from bubble_desktop.core.llm.chatglm.compat import transformers_is_tested

    assert transformers_is_tested()  # pyproject pins the release the compat layer was verified on
    m = models["roles"]
    assert isinstance(m, ChatModel)
    assert m.info.remote_code and m.info.arch == "chatglm3" and m.info.device == "cpu"
    assert models["tuples"].info.arch == "chatglm" and models["tuples"].info.context_window == 2048


def test_stop_mid_stream(models: dict[str, ChatGLMChatModel]) -> None:
    cancel = threading.Event()
    settings = GREEDY.model_copy(update={"max_new_tokens": 200})
    generation = models["roles"].stream([ChatMessage("user", "你好")], settings, cancel)
    seen = 0
    for _ in generation:
        seen += 1
        if seen == 2:
            cancel.set()
    assert generation.stats is not None
    assert generation.stats.finish_reason in ("cancelled", "stop")
    assert generation.stats.completion_tokens <= 4


def test_sampling_settings_are_honoured(models: dict[str, ChatGLMChatModel]) -> None:
    m = models["tuples"]
    msgs = [ChatMessage("user", "你好")]
    greedy = m.stream(msgs, GREEDY).run()
    # top_k=1 sampling can only pick the argmax: proves top_k reaches the logits processors
    top1 = m.stream(msgs, GREEDY.model_copy(update={"temperature": 1.5, "top_k": 1, "top_p": 1.0})).run()
    assert top1 == greedy
    hot = GREEDY.model_copy(
        update={"temperature": 2.0, "top_k": 0, "top_p": 1.0, "seed": 7, "max_new_tokens": 16}
    )
    assert m.stream(msgs, hot).run() == m.stream(msgs, hot).run()  # same seed, same answer
    # the fixture's greedy answer repeats one character: a repetition penalty must change that
    penalised = m.stream(msgs, GREEDY.model_copy(update={"repetition_penalty": 2.0})).run()
    assert penalised != greedy


def test_system_prompt_goes_before_the_first_question_for_v1(models: dict[str, ChatGLMChatModel]) -> None:
    m = models["tuples"]
    bare = m.count_tokens([ChatMessage("user", "你好")])
    with_system = m.count_tokens([ChatMessage("system", "ABC"), ChatMessage("user", "你好")])
    assert with_system == bare + len("ABC\n\n")
    roles = models["roles"]
    assert roles.count_tokens(
        [ChatMessage("system", "ABC"), ChatMessage("user", "你好")]
    ) > roles.count_tokens([ChatMessage("user", "你好")])


def test_compat_classes_follow_a_re_executed_module(folders: dict[str, Path]) -> None:
    """transformers 4.42–4.48 re-ran the remote module on every load: patches must follow the new classes."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from bubble_desktop.core.llm.chatglm.compat import COMPAT_MARK, compat_tokenizer_class

    ref = "tokenization_chatglm.ChatGLMTokenizer"
    first = get_class_from_dynamic_module(ref, str(folders["tuples"]))
    again = get_class_from_dynamic_module(ref, str(folders["tuples"]), force_download=True)  # re-executes
    assert first is not again
    c1, c2 = compat_tokenizer_class(first), compat_tokenizer_class(again)
    assert c1 is compat_tokenizer_class(first)  # cached per remote class
    assert c2 is not c1 and issubclass(c2, again) and c2.__dict__[COMPAT_MARK]
    tok = c2.from_pretrained(str(folders["tuples"]))
    assert tok(["你好"])["input_ids"][0][-1] == 1  # <s> appended, _pad accepted padding_side


def test_consent_required_then_remembered(folders: dict[str, Path]) -> None:
    with pytest.raises(RemoteCodeConsentRequired):
        load_remote_code_model(LoadRequest(path=str(folders["roles"])))
    m = load_remote_code_model(LoadRequest(path=str(folders["roles"]), trust_remote_code=True))
    m.unload()
    # --trust-remote-code was recorded: the next load needs no flag
    m = load_remote_code_model(LoadRequest(path=str(folders["roles"])))
    m.unload()


def test_the_model_loader_dispatches_here(folders: dict[str, Path]) -> None:
    from bubble_desktop.core.llm.loader import load_model

    m = load_model(LoadRequest(path=str(folders["roles"]), trust_remote_code=True, device="cpu"))
    try:
        assert isinstance(m, ChatGLMChatModel)
    finally:
        m.unload()


def test_other_remote_code_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "other"
    d.mkdir()
    (d / "config.json").write_text(
        '{"model_type": "phi", "auto_map": {"AutoModel": "modeling_phi.PhiModel"}}'
    )
    with pytest.raises(UnsupportedModelError):
        load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True))


def test_gcc_detection_messages() -> None:
    check_c_compiler(which=lambda name: "/usr/bin/gcc")
    with pytest.raises(GccMissingError) as win:
        check_c_compiler(which=lambda name: None, platform="win32")
    assert "MinGW-w64" in win.value.hint and "TDM-GCC" in win.value.hint and "GPU" in win.value.hint
    with pytest.raises(GccMissingError) as linux:
        check_c_compiler(which=lambda name: None, platform="linux")
    assert "apt install gcc" in linux.value.hint


def test_int4_on_cpu_without_gcc_fails_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = build_chatglm_like(tmp_path / "int4", "tuples", quantization_bit=4)
    import bubble_desktop.core.llm.chatglm.model as model_mod

    monkeypatch.setattr(model_mod.shutil, "which", lambda name: None)
    modules_before = set(sys.modules)
    with pytest.raises(GccMissingError):
        load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True, device="cpu"))
    assert not any("transformers_modules.int4" in m for m in set(sys.modules) - modules_before)


def test_cpm_kernels_failure_of_any_kind_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cpm_kernels raises RuntimeError (not ImportError) where no CUDA driver exists."""
    pkg = tmp_path / "fake" / "cpm_kernels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('Unknown CUDA error: no driver')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    monkeypatch.delitem(sys.modules, "cpm_kernels", raising=False)
    with pytest.raises(CpmKernelsMissingError) as err:
        check_cpm_kernels()
    assert "RuntimeError" in err.value.message and "pip install cpm_kernels" in err.value.hint


def test_decoding_cleans_up_spaces_before_punctuation_as_on_transformers_4_33(
    folders: dict[str, Path],
) -> None:
    """THUDM's tokenizer_config.json has no clean_up_tokenization_spaces: 4.33 cleaned " ." to "."."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from bubble_desktop.core.llm.chatglm.compat import compat_tokenizer_class

    remote = get_class_from_dynamic_module("tokenization_chatglm.ChatGLMTokenizer", str(folders["tuples"]))
    tok = compat_tokenizer_class(remote).from_pretrained(str(folders["tuples"]))
    ids = tok.convert_tokens_to_ids(list("Hi , ok . Yes ?"))
    assert tok.decode(ids) == "Hi, ok. Yes?"
    # a folder that says otherwise keeps its choice
    kept = compat_tokenizer_class(remote).from_pretrained(
        str(folders["tuples"]), clean_up_tokenization_spaces=False
    )
    assert kept.decode(ids) == "Hi , ok . Yes ?"


def test_int4_kernel_that_fails_to_compile_says_so_with_the_compilers_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcc exists but fails: the remote code's bare ``assert`` must become the compiler's own words."""
    d = build_chatglm_like(tmp_path / "int4", "tuples", quantization_bit=4)
    fake = tmp_path / "bin"
    fake.mkdir()
    gcc = fake / "gcc"
    gcc.write_text(
        "#!/bin/sh\necho \"quantization_kernels.c:1:1: error: unknown type name 'omp_lock'\" >&2\nexit 1\n"
    )
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ModelError) as err:
        load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True, device="cpu"))
    assert "could not compile" in err.value.message
    assert "unknown type name 'omp_lock'" in err.value.message
    assert "download" not in err.value.hint
    assert "AssertionError" not in err.value.message


def test_int4_kernel_compiles_with_the_real_gcc(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here")
    d = build_chatglm_like(tmp_path / "int4", "tuples", quantization_bit=4)
    model = load_remote_code_model(LoadRequest(path=str(d), trust_remote_code=True, device="cpu"))
    assert model.info.arch.endswith("-int4")
    model.unload()
