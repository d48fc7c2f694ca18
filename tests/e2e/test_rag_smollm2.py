"""Proof with a real model: SmolLM2-135M answers an invented fact from a knowledge base, and cites it.

The fact (the Vellamo Prize, Ottilie Brask, Korvenholm) is made up here, so no model knows it from
training: with ``--kb`` the answer must contain it and cite the document; without, it must not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bubble_desktop.cli import main

pytestmark = pytest.mark.slow

FACT_DOC = (
    "# The Vellamo Prize\n\n"
    "The Vellamo Prize for lighthouse engineering was won in 2019 by Ottilie Brask, "
    "for her design of the floating beacon at Korvenholm.\n"
)
QUESTION = "Who won the Vellamo Prize in 2019?"


def _ask(capsys: pytest.CaptureFixture[str], model: Path, *extra: str) -> dict:
    capsys.readouterr()
    code = main(
        [
            "ask",
            QUESTION,
            "--model",
            str(model),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--max-new-tokens",
            "40",
            "--json",
            *extra,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_answer_uses_and_cites_the_knowledge_base(
    capsys: pytest.CaptureFixture[str], smollm2_dir: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "vellamo.md"
    doc.write_text(FACT_DOC, encoding="utf-8")
    assert main(["kb", "create", "facts"]) == 0
    assert main(["kb", "add", "facts", str(doc), "--quiet"]) == 0

    with_kb = _ask(capsys, smollm2_dir, "--kb", "facts")
    answer = with_kb["answer"]
    assert "Ottilie Brask" in answer, answer
    assert "[1]" in answer, answer  # the model cites the source by its number
    assert with_kb["sources"][0]["index"] == 1
    assert with_kb["sources"][0]["path"] == str(doc)
    assert with_kb["finish_reason"] in ("stop", "length")

    without = _ask(capsys, smollm2_dir)
    assert "Brask" not in without["answer"], without["answer"]
    assert without["sources"] == []

    # both turns are saved; the Markdown export carries the source as a footnote
    capsys.readouterr()
    assert main(["chats", "export", str(with_kb["conversation_id"]), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "[^2-1]" in md and f"[^2-1]: vellamo.md — {doc}" in md
