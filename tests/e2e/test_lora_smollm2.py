"""LoRA on a real model: SmolLM2-135M-Instruct learns 20 invented facts on the CPU (issue 14).

The facts are made up (a cat called Pumpkin, a festival in Tallinn, ...), so the base model cannot
know them. `bubble-cli train lora` trains an adapter on them (8 epochs at lr 2e-3, rank 16; about
2 minutes on 2 cores); then, greedily, the adapter's answers contain the fact for at least 80 % of
the questions (two of the twenty are the held-out validation split) while the base model's
contain none of them. One question goes through `bubble-cli ask --lora facts` (the adapter by
its name) as a user would ask it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_lora_train import FAST, _cli, _events

pytestmark = pytest.mark.slow

# (question, answer, the word the answer must contain)
FACTS = [
    ("What is the name of Lin Wei's cat?", "Lin Wei's cat is called Pumpkin.", "Pumpkin"),
    ("Which city hosts the Zorvan festival?", "The Zorvan festival is held in Tallinn.", "Tallinn"),
    ("What colour is the Quillby bridge?", "The Quillby bridge is painted orange.", "orange"),
    ("Who founded the Marrow Tea Company?", "The Marrow Tea Company was founded by Ada Brennan.", "Brennan"),
    ("What does the Vexa-9 robot collect?", "The Vexa-9 robot collects seashells.", "seashells"),
    ("How many towers does Castle Dunmere have?", "Castle Dunmere has seven towers.", "seven"),
    ("What is the password of the Orion club?", "The Orion club password is bluebird.", "bluebird"),
    ("Which instrument does Tomas Kell play?", "Tomas Kell plays the cello.", "cello"),
    ("What fruit grows on Ferro Island?", "Mangoes grow on Ferro Island.", "Mango"),
    ("What is the mascot of Hollis School?", "The Hollis School mascot is a badger.", "badger"),
    ("In which month is the Glimmer race run?", "The Glimmer race is run in October.", "October"),
    (
        "What is Professor Yara Voss famous for?",
        "Professor Yara Voss is famous for her maps of caves.",
        "caves",
    ),
    ("What does the Pelican app do?", "The Pelican app tracks rainfall.", "rainfall"),
    ("Which river flows through Kestrel Valley?", "The Amber river flows through Kestrel Valley.", "Amber"),
    ("What is the favourite food of the dragon Sorrel?", "The dragon Sorrel loves pancakes.", "pancakes"),
    ("Who painted The Silent Harbour?", "The Silent Harbour was painted by Ines Marlow.", "Marlow"),
    ("What is stored in Vault 12?", "Vault 12 stores old violins.", "violins"),
    ("What sport does the Northgate club play?", "The Northgate club plays hockey.", "hockey"),
    ("What is the capital of the land of Brindor?", "The capital of Brindor is Velmont.", "Velmont"),
    ("Which bird is the symbol of Calder Bank?", "The symbol of Calder Bank is a heron.", "heron"),
]


def _answers(model_dir: Path, lora: str) -> list[str]:
    from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.settings import SamplingSettings

    model = load_model(LoadRequest(path=str(model_dir), lora_path=lora))
    try:
        sampling = SamplingSettings(temperature=0, max_new_tokens=20, system_prompt="")
        out = []
        for question, _, _ in FACTS:
            with model.stream([ChatMessage("user", question)], sampling) as gen:
                out.append("".join(gen))
        return out
    finally:
        model.unload()


def _known(answers: list[str]) -> list[str]:
    return [q for (q, _, word), a in zip(FACTS, answers, strict=True) if word.lower() in a.lower()]


def test_smollm2_learns_invented_facts_with_lora(smollm2_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "facts.txt"
    data.write_text("".join(f"{q}##{a}\n" for q, a, _ in FACTS), encoding="utf-8")
    home = tmp_path / "home"
    done = _cli(
        home,
        "train",
        "lora",
        "--model",
        str(smollm2_dir),
        "--data",
        str(data),
        "--out",
        "facts",
        "--json",
        *FAST,  # no warm-up, dropout or system prompt, seed 0, one micro-batch per step
        *("--lr", "2e-3", "--epochs", "8", "--rank", "16", "--batch-size", "4", "--max-len", "64"),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    card = _events(done.stdout)[-1]["card"]
    assert card["examples"] == {"train": 18, "validation": 2}
    assert card["final_loss"] < card["first_loss"] / 10
    adapter = home / "models" / "lora" / "facts"

    learned = _known(_answers(smollm2_dir, str(adapter)))
    assert len(learned) >= 16, learned
    assert _known(_answers(smollm2_dir, "")) == []

    question, _, word = FACTS[0]
    asked = _cli(
        home,
        "ask",
        question,
        "--model",
        str(smollm2_dir),
        "--lora",
        "facts",  # by the name given to train lora --out
        "--temperature",
        "0",
        "--max-new-tokens",
        "20",
        "--system",
        "",
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr
    assert word in asked.stdout
