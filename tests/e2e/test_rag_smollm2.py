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


ORCHARD_DOC = (
    "# Aaron's Apple Orchards\n\n"
    "Aaron's Apple Orchards, on the shore of Lake Tuuli, grows the Sunblush apple, a variety bred in 2011 "
    "by Mirja Salo.\n"
)


@pytest.mark.parametrize("backend", ["transformers", "llama.cpp"])
def test_default_repetition_penalty_lets_the_model_quote_its_source(
    backend: str, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Issue 10: at the old default repetition penalty (1.1, prompt-wide) SmolLM2 once answered a
    question whose answer
    sat verbatim in source [1] with "Aaron's Apple Orchards - Aaron's Apple Orchards - …", because the
    penalty covered the prompt. Now it covers the answer's own recent tokens: the fact and its citation."""
    from bubble_desktop.core.settings import SamplingSettings

    assert SamplingSettings().repetition_penalty > 1.0  # the default really penalises
    model = request.getfixturevalue("smollm2_dir" if backend == "transformers" else "smollm2_gguf")
    (tmp_path / "vellamo.md").write_text(FACT_DOC, encoding="utf-8")
    (tmp_path / "orchard.md").write_text(ORCHARD_DOC, encoding="utf-8")
    assert main(["kb", "create", "two"]) == 0
    assert (
        main(["kb", "add", "two", str(tmp_path / "vellamo.md"), str(tmp_path / "orchard.md"), "--quiet"]) == 0
    )
    capsys.readouterr()
    # default sampling settings but greedy (temperature 0), so the test is repeatable
    code = main(
        [
            "ask",
            "Which apple does Aaron's Apple Orchards grow?",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--kb",
            "two",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    answer = result["answer"]
    assert "Sunblush" in answer, answer
    cited = {s["index"] for s in result["sources"] if s["path"].endswith("orchard.md")}
    assert cited and any(f"[{i}]" in answer for i in cited), (answer, result["sources"])
    assert "Orchards - Aaron" not in answer, answer
