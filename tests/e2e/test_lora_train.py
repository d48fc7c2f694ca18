"""LoRA training end to end on the tiny LLaMA: real peft, real child processes, the real CLI.

Training the tiny random model on two short Q&A pairs for 60 steps at lr 1e-2 takes ~10 s on 2
cores; afterwards the adapter, loaded through the app's loader, answers both questions greedily.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.markers import needs_bitsandbytes_cpu

ROOT = Path(__file__).parents[2]
QA = "What is Bubble?##Bubble is a private chatbot.\nWho made the moon cheese?##The blue fox made it.\n" * 4
FAST = [
    "--lr",
    "1e-2",
    "--grad-accum",
    "1",
    "--warmup-steps",
    "0",
    "--dropout",
    "0",
    "--seed",
    "0",
    "--system",
    "",
]


def _cli(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bubble_desktop.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _lora(model: Path, data: Path, out: str) -> list[str]:
    """The arguments of ``bubble-cli train lora`` every test here starts from."""
    return ["train", "lora", "--model", str(model), "--data", str(data), "--out", out]


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture()
def qa_file(tmp_path: Path) -> Path:
    f = tmp_path / "qa.txt"
    f.write_text(QA, encoding="utf-8")
    return f


def _greedy(model_dir: Path, lora: str, question: str) -> str:
    from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.settings import SamplingSettings

    model = load_model(LoadRequest(path=str(model_dir), lora_path=lora))
    try:
        sampling = SamplingSettings(temperature=0, max_new_tokens=16, system_prompt="")
        with model.stream([ChatMessage("user", question)], sampling) as gen:
            return "".join(gen)
    finally:
        model.unload()


def test_training_lowers_the_loss_and_the_adapter_answers(
    tiny_model_dir: Path, qa_file: Path, bubble_home: Path
) -> None:
    done = _cli(
        bubble_home,
        *_lora(tiny_model_dir, qa_file, "facts"),
        "--max-steps",
        "60",
        "--save-every",
        "20",
        "--json",
        *FAST,
    )
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and "preview" in kinds and "estimate" in kinds and "start" in kinds
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 61))
    assert all(e["tokens_per_s"] > 0 and e["eta_s"] >= 0 for e in steps)
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.5
    assert [e["step"] for e in events if e["event"] == "eval"] == [20, 40, 60]
    start = next(e for e in events if e["event"] == "start")
    assert start["val_examples"] == 1 and start["train_examples"] == 7 and start["resumed_from"] == 0
    assert start["target_modules"][:2] == ["q_proj", "k_proj"]
    adapter = Path(events[-1]["adapter"])
    assert adapter == bubble_home / "models" / "lora" / "facts"
    card = json.loads((adapter / "adapter_card.json").read_text(encoding="utf-8"))
    assert card["base_model"]["path"] == str(tiny_model_dir) and card["data_files"] == [str(qa_file)]
    assert (
        card["steps"] == 60 and card["final_loss"] < card["first_loss"] and card["final_val_loss"] is not None
    )
    assert card["settings"]["rank"] == 8 and card["settings"]["alpha"] == 16
    assert not (bubble_home / "models" / "lora" / ".partial" / "facts").exists()

    assert _greedy(tiny_model_dir, str(adapter), "What is Bubble?") == "Bubble is a private chatbot."
    assert _greedy(tiny_model_dir, str(adapter), "Who made the moon cheese?") == "The blue fox made it."
    assert _greedy(tiny_model_dir, "", "What is Bubble?") != "Bubble is a private chatbot."

    again = _cli(
        bubble_home,
        *_lora(tiny_model_dir, qa_file, "facts"),
        *FAST,
    )
    assert again.returncode == 2 and "already exists" in again.stderr

    # merged into a copy of the model, it answers the same without the adapter
    merged = _cli(
        bubble_home,
        "train",
        "merge",
        "--model",
        str(tiny_model_dir),
        "--lora",
        "facts",
        "--out",
        str(bubble_home / "merged"),
    )
    assert merged.returncode == 0, merged.stderr
    assert (bubble_home / "merged" / "config.json").exists()
    assert not (bubble_home / "merged" / "adapter_config.json").exists()
    assert _greedy(bubble_home / "merged", "", "What is Bubble?") == "Bubble is a private chatbot."


def test_sigkill_then_resume_continues_from_the_checkpoint(
    tiny_model_dir: Path, qa_file: Path, bubble_home: Path
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bubble_desktop.cli",
        "--home",
        str(bubble_home),
        *_lora(tiny_model_dir, qa_file, "crash"),
        "--max-steps",
        "40",
        "--save-every",
        "5",
        "--json",
        *FAST,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    seen = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            ev = json.loads(line)
            if ev["event"] == "checkpoint" and ev["step"] >= 10:
                seen = ev["step"]
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its training child: a crash
                break
    finally:
        proc.wait(30)
    assert seen >= 10
    assert proc.returncode == -signal.SIGKILL
    partial = bubble_home / "models" / "lora" / ".partial" / "crash"
    assert (partial / "job.json").exists() and not (bubble_home / "models" / "lora" / "crash").exists()

    fresh = _cli(
        bubble_home,
        *_lora(tiny_model_dir, qa_file, "crash"),
        *FAST,
    )
    assert fresh.returncode == 2 and "--resume" in fresh.stderr  # never silently starts over

    done = _cli(bubble_home, "train", "lora", "--out", "crash", "--resume", "--json")
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    start = next(e for e in events if e["event"] == "start")
    assert seen <= start["resumed_from"] < 40 and start["resumed_from"] % 5 == 0
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(start["resumed_from"] + 1, 41))
    card = json.loads((Path(events[-1]["adapter"]) / "adapter_card.json").read_text(encoding="utf-8"))
    assert card["steps"] == 40 and len(card["loss_history"]) == 40  # the history before the crash is kept


def test_job_api_cancel_and_resume(tiny_model_dir: Path, qa_file: Path) -> None:
    """The GUI's path: a TrainingJob polled without blocking, cancelled, then resumed."""
    from bubble_desktop.core.train.lora import LoraSettings, TrainingJob, latest_checkpoint

    settings = LoraSettings(
        model=str(tiny_model_dir),
        data=[str(qa_file)],
        name="gui",
        lr=1e-2,
        grad_accum=1,
        max_steps=200,
        save_every=100,
        warmup_steps=0,
    )
    job = TrainingJob(settings)
    job.start()
    try:
        deadline = time.monotonic() + 120
        while job.final is None and time.monotonic() < deadline:
            t0 = time.perf_counter()
            events = job.poll(0)
            assert time.perf_counter() - t0 < 0.05  # poll never blocks the GUI
            if job.last_step is not None and job.last_step["step"] >= 3:
                job.cancel()
            if not events:
                time.sleep(0.02)
    finally:
        job.wait(30)
        job.close()
    assert job.final is not None and job.final["event"] == "cancelled", job.final
    stopped = job.final["step"]
    assert 3 <= stopped < 100
    ckpt = latest_checkpoint("gui")
    assert ckpt is not None and ckpt.name == f"step-{stopped:06d}"

    resumed = TrainingJob(settings, resume=True)
    resumed.start()
    seen = []
    try:
        for ev in resumed.events():
            seen.append(ev)
            if ev["event"] == "step" and ev["step"] == stopped + 2:
                resumed.cancel()
    finally:
        resumed.close()
    assert next(e for e in seen if e["event"] == "start")["resumed_from"] == stopped
    assert (
        seen[-1]["event"] == "cancelled" and stopped + 2 <= seen[-1]["step"] < 100
    )  # the child sees it a step later


def test_ctrl_c_leaves_a_resumable_checkpoint(tiny_model_dir: Path, qa_file: Path, bubble_home: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bubble_desktop.cli",
        "--home",
        str(bubble_home),
        *_lora(tiny_model_dir, qa_file, "intr"),
        "--max-steps",
        "500",
        "--save-every",
        "400",
        "--json",
        *FAST,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "step" and ev["step"] == 3:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    proc.wait(60)
    assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    assert events[-1]["event"] == "cancelled" and events[-1]["step"] >= 3
    assert Path(events[-1]["checkpoint"]).is_dir()


@needs_bitsandbytes_cpu
def test_qlora_trains_on_4_bit_base_weights_on_the_cpu(
    tiny_model_dir: Path, qa_file: Path, bubble_home: Path
) -> None:
    """QLoRA for real: the base model's linear layers load as NF4 (bitsandbytes' CPU backend),
    peft's k-bit preparation runs, the adapter learns, and it answers on the 4-bit base as on the
    full-precision one (the usual way a QLoRA adapter is used)."""
    done = _cli(
        bubble_home,
        *_lora(tiny_model_dir, qa_file, "qfacts"),
        "--max-steps",
        "60",
        "--quantize",
        "4bit",
        "--json",
        *FAST,
    )
    assert done.returncode == 0, done.stderr
    assert "kernels" not in done.stderr  # bitsandbytes' hint to fetch kernels from the hub is muted
    events = _events(done.stdout)
    start = next(e for e in events if e["event"] == "start")
    assert start["qlora"] is True and start["gradient_checkpointing"] is True
    assert start["device"] == "cpu" and start["settings"]["quantization"] == "4bit"
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 60 and steps[-1]["loss"] < steps[0]["loss"] - 0.5
    adapter = Path(events[-1]["adapter"])
    card = json.loads((adapter / "adapter_card.json").read_text(encoding="utf-8"))
    assert card["settings"]["quantization"] == "4bit"

    from bubble_desktop.core.llm.base import ChatMessage, LoadRequest
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.settings import SamplingSettings

    model = load_model(LoadRequest(path=str(tiny_model_dir), lora_path=str(adapter), quantization="4bit"))
    try:
        sampling = SamplingSettings(temperature=0, max_new_tokens=16, system_prompt="")
        with model.stream([ChatMessage("user", "What is Bubble?")], sampling) as gen:
            assert "".join(gen) == "Bubble is a private chatbot."
    finally:
        model.unload()
    assert _greedy(tiny_model_dir, str(adapter), "What is Bubble?") == "Bubble is a private chatbot."


def test_memory_estimate_refuses_clearly(tiny_model_dir: Path, qa_file: Path, bubble_home: Path) -> None:
    done = _cli(
        bubble_home,
        *_lora(tiny_model_dir, qa_file, "big"),
        "--memory-limit-mb",
        "50",
        *FAST,
    )
    assert done.returncode == 2
    assert "Training would need about" in done.stderr and "50 MB is free" in done.stderr
    assert "hint: Lower the maximum length" in done.stderr
    assert not (bubble_home / "models" / "lora" / ".partial" / "big").exists()


def test_bad_data_files_give_clear_errors(tiny_model_dir: Path, tmp_path: Path, bubble_home: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "response": "Hello"}\n{"prompt": "x"\n{"foo": 1}\n', encoding="utf-8")
    done = _cli(bubble_home, *_lora(tiny_model_dir, bad, "b"))
    assert done.returncode == 2
    assert "2 row(s)" in done.stderr and "bad.jsonl:2: not valid JSON" in done.stderr
    assert "bad.jsonl:3: unknown row shape (keys: foo)" in done.stderr

    missing = _cli(
        bubble_home,
        *_lora(tiny_model_dir, tmp_path / "nope.csv", "b"),
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    noqa = tmp_path / "cols.csv"
    noqa.write_text("foo,bar\n1,2\n", encoding="utf-8")
    cols = _cli(bubble_home, *_lora(tiny_model_dir, noqa, "b"))
    assert cols.returncode == 2 and "question,answer" in cols.stderr

    pv = _cli(bubble_home, "train", "preview", "--model", str(tiny_model_dir), "--data", str(bad), "--json")
    report = json.loads(pv.stdout)
    assert pv.returncode == 2 and report["examples"] == 1 and len(report["problems"]) == 2
