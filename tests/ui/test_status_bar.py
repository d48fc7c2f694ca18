"""The status bar: answer figures (a prompt size only when it is known) and the model state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bubble_desktop.core.llm.base import GenerationStats, ModelInfo
from bubble_desktop.ui.status_bar import ModelStatusBar


def test_answer_figures_leave_out_an_unknown_prompt_size(qtbot: Any) -> None:
    bar = ModelStatusBar()
    qtbot.addWidget(bar)
    bar.show_stats(GenerationStats(prompt_tokens=50, completion_tokens=413, tokens_per_s=97.4))
    assert bar.tokens_label.text() == "prompt 50 · answer 413 tokens"
    assert bar.speed_label.text() == "97.4 tokens/s"
    # stopped through llama.cpp: no timings come after a stop, so the prompt size is not known
    bar.show_stats(GenerationStats(prompt_tokens=0, completion_tokens=91, finish_reason="cancelled"))
    assert bar.tokens_label.text() == "answer 91 tokens"


def test_a_model_notice_marks_the_ready_state_and_is_read_on_hover(qtbot: Any) -> None:
    """A GGUF whose chat template llama.cpp could not use answers in the plain format: the status bar
    says so (a mark, the words in the tooltip) instead of leaving the user to wonder at odd answers."""
    bar = ModelStatusBar()
    qtbot.addWidget(bar)
    info = ModelInfo(
        name="odd", path="/m/odd.gguf", arch="llama", device="cpu", dtype="gguf", context_window=4096
    )
    bar.show_ready(info)
    assert bar.model_label.text() == "odd · ready on CPU" and "⚠" not in bar.model_label.toolTip()
    notice = "llama.cpp cannot use the chat template in odd.gguf: …"
    bar.show_ready(replace(info, runs_on="CPU · 2 threads", notices=(notice,)))
    assert bar.model_label.text() == "odd · ready on CPU · 2 threads ⚠"
    tooltip = bar.model_label.toolTip()
    assert tooltip.startswith("/m/odd.gguf\n") and tooltip.endswith(f"\n\n⚠ {notice}")


def test_a_long_notice_is_elided_to_the_bar_not_cut_mid_word(qtbot: Any) -> None:
    """Seen in a real window: the English chat-template notice ran past the window's edge."""
    bar = ModelStatusBar()
    qtbot.addWidget(bar)
    bar.resize(600, 24)
    notice = "llama.cpp cannot use the chat template in odd.gguf: " + "the plain format instead. " * 12
    info = ModelInfo(
        name="odd", path="/m/odd.gguf", arch="llama", device="cpu", dtype="gguf", context_window=8
    )
    bar.show_ready(replace(info, notices=(notice,)))
    shown = bar.currentMessage()
    assert shown.startswith("⚠ llama.cpp cannot use the chat template") and shown.endswith("…")
    assert bar.fontMetrics().horizontalAdvance(shown) <= 600
    assert bar.model_label.toolTip().endswith(f"⚠ {notice}")  # whole on hover
