"""Streaming ChatGLM's "whole response so far" as append-only chunks (StreamDiffer)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bubble_desktop.core.llm.chatglm.model import StreamDiffer

_PUNCT = [(",", "，"), ("!", "！"), (":", "："), (";", "；"), ("?", "？")]


def glm6b_like_postprocess(text: str) -> str:
    """What ChatGLM-6B's process_response does to the text so far: strip, and full-width punctuation
    next to Chinese characters (so a trailing "," can change once the next character arrives)."""
    text = text.strip()
    for half, full in _PUNCT:
        text = re.sub(r"([\u4e00-\u9fff])" + re.escape(half), r"\1" + full, text)
        text = re.sub(re.escape(half) + r"([\u4e00-\u9fff])", full + r"\1", text)
    return text


@given(st.lists(st.sampled_from(["a", "b", " ", ",", "!", "?", ":", ";", "你", "好", "\n"]), max_size=40))
def test_chunks_add_up_to_the_final_response(tokens: list[str]) -> None:
    differ = StreamDiffer()
    raw = ""
    chunks = []
    for tok in tokens:
        raw += tok
        chunks.append(differ.feed(glm6b_like_postprocess(raw)))
    chunks.append(differ.flush())
    assert "".join(chunks) == glm6b_like_postprocess(raw)


def test_half_decoded_byte_is_held_back() -> None:
    differ = StreamDiffer()
    assert differ.feed("你\ufffd") == "你"
    assert differ.feed("你好") == "好"
    assert differ.flush() == ""


def test_a_rewrite_of_shown_text_keeps_what_was_shown() -> None:
    differ = StreamDiffer()
    assert differ.feed("abc") == "abc"
    assert differ.feed("xbcd") == "d"  # never retracts; continues after the shown part
    assert differ.flush() == ""
