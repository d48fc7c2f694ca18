"""The status bar's answer figures: a prompt size is shown only when it is known."""

from __future__ import annotations

from typing import Any

from bubble_desktop.core.llm.base import GenerationStats
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
