"""The llama.cpp backend end to end on the real SmolLM2-135M GGUF, and bad GGUF files for real."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.loader import load_model
from bubble_desktop.core.settings import SamplingSettings

QUESTION = [ChatMessage("user", "What is the capital of France?")]


def greedy(**kw: object) -> SamplingSettings:
    return SamplingSettings().model_copy(update={"temperature": 0.0, "max_new_tokens": 40, **kw})


@pytest.fixture(scope="module")
def smol(smollm2_gguf: Path):
    model = load_model(LoadRequest(path=str(smollm2_gguf), device="cpu"))
    yield model
    model.unload()


@pytest.mark.slow
def test_gguf_opens_directly_and_answers(smol) -> None:
    gen = smol.stream(QUESTION, greedy())
    text = gen.run()
    assert "Paris" in text
    assert gen.stats is not None and gen.stats.completion_tokens > 0 and gen.stats.prompt_tokens > 0
    assert "CPU" in smol.status_text


@pytest.mark.slow
def test_fixed_seed_gives_the_same_text(smol) -> None:
    s = SamplingSettings().model_copy(update={"temperature": 0.9, "seed": 42, "max_new_tokens": 30})
    assert smol.stream(QUESTION, s).run() == smol.stream(QUESTION, s).run()


@pytest.mark.slow
def test_stop_ends_the_stream_at_once(smol) -> None:
    cancel = threading.Event()
    gen = smol.stream(
        [ChatMessage("user", "Write a long story about a dragon.")], greedy(max_new_tokens=400), cancel
    )
    chunks = 0
    for _ in gen:
        chunks += 1
        if chunks == 5:
            cancel.set()
    assert chunks < 20
    assert gen.stats is not None and gen.stats.finish_reason == "cancelled"


def _load(path: Path) -> None:
    load_model(LoadRequest(path=str(path), device="cpu"))


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError):
        _load(tmp_path / "gone.gguf")


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"this is not a model at all\n" * 100)
    with pytest.raises(UserFacingError):
        _load(bad)


def test_a_truncated_gguf_is_a_clear_error(tmp_path: Path, smollm2_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as f:
        cut.write_bytes(f.read(smollm2_gguf.stat().st_size // 3))
    with pytest.raises(UserFacingError):
        _load(cut)
