"""LoRA training on the ChatGLM-like fixture through its own code (the compat layer), in this process.

A few steps on two Q&A pairs: the loss falls, the examples are encoded with the prompt ChatGLM's own
stream_chat builds, and the saved adapter loads on the ChatGLM path and changes its answers.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
from bubble_desktop.core.llm.chatglm import load_remote_code_model
from bubble_desktop.core.llm.chatglm.model import prompt_ids
from bubble_desktop.core.settings import SamplingSettings
from bubble_desktop.core.train.data import Example, encode_example
from bubble_desktop.core.train.lora import LoraSettings, train
from tests.fixtures.chatglm_like.build import build_chatglm_like

QA = "What is Bubble?##Bubble is a private chatbot.\nWho made the moon cheese?##The blue fox made it.\n" * 4
GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=12, repetition_penalty=1.0, system_prompt="")


@pytest.mark.parametrize("fmt", ["tuples", "roles"])
def test_lora_training_on_chatglm_code(tmp_path: Path, bubble_home: Path, fmt: str) -> None:
    base = build_chatglm_like(tmp_path / fmt, fmt)
    data = tmp_path / "qa.txt"
    data.write_text(QA, encoding="utf-8")
    settings = LoraSettings(
        model=str(base),
        data=[str(data)],
        name=f"glm-{fmt}",
        max_steps=40,
        lr=2e-2,
        grad_accum=1,
        warmup_steps=0,
        dropout=0,
        save_every=20,
        trust_remote_code=True,
        device="cpu",
        seed=0,
    )
    events: list[dict[str, Any]] = []
    done = train(settings, events.append)
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 40 and all(0 < x < 100 for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    start = next(e for e in events if e["event"] == "start")
    assert set(start["target_modules"]) == {"qkv", "dense", "mlp_in", "mlp_out"}

    plain = load_remote_code_model(LoadRequest(path=str(base), trust_remote_code=True, device="cpu"))
    # training encodes the prompt as ChatGLM's stream_chat builds it, then answer + eos
    example = Example("What is Bubble?", "Bubble is a private chatbot.")
    enc = encode_example(plain.tokenizer, example, 0, partial(prompt_ids, plain.tokenizer, plain.variant))
    n_prompt = plain.count_tokens([ChatMessage("user", example.prompt)])
    assert enc.labels[:n_prompt] == [-100] * n_prompt and enc.input_ids[-1] == 2
    assert plain.tokenizer.decode(enc.input_ids[n_prompt:-1]) == example.answer

    tuned = load_remote_code_model(
        LoadRequest(path=str(base), trust_remote_code=True, device="cpu", lora_path=done["adapter"])
    )
    question = [ChatMessage("user", "What is Bubble?")]
    assert "".join(tuned.stream(question, GREEDY)) != "".join(plain.stream(question, GREEDY))
    plain.unload()
    tuned.unload()
