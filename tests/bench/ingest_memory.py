"""Peak RSS while ingesting a large folder (default 200 MB of text): memory must stay bounded.

    .venv/bin/python tests/bench/ingest_memory.py --mb 200 --embedder hash
    .venv/bin/python tests/bench/ingest_memory.py --mb 200 --embedder minilm --limit-s 120

``--embedder hash`` swaps MiniLM for a deterministic hashing embedder (384-d unit vectors, no model)
so the whole folder goes through parsing, chunking, BM25, the Qdrant Edge shard and the catalog in
minutes on a small CPU: it measures the pipeline's own memory. ``--embedder minilm`` uses the real
model and cancels after ``--limit-s`` seconds (a 200 MB folder is ~400k chunks: hours on 2 cores),
showing the model's share. RSS is sampled every 0.2 s; the JSON has the peak and the RSS at each
tenth of the files, so growth (or its absence) is visible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.ingest import WORDS  # noqa: E402


class HashEmbedder:
    """Bench-only stand-in for MiniLM: a unit vector seeded by the text's hash."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def coverage(self, text: str) -> float:
        return 1.0


def make_folder(root: Path, mb: int, file_kb: int = 500, seed: int = 3) -> int:
    r = random.Random(seed)
    sentences = [
        " ".join(r.choice(WORDS) for _ in range(r.randint(6, 18))).capitalize() + "." for _ in range(5000)
    ]
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    n = 0
    target = mb * 1024 * 1024
    while total < target:
        sub = root / f"part{n // 100:03d}"
        sub.mkdir(exist_ok=True)
        parts: list[str] = []
        size = 0
        while size < file_kb * 1024:
            para = " ".join(r.choices(sentences, k=6))
            parts.append(para)
            size += len(para) + 2
        data = "\n\n".join(parts).encode()
        (sub / f"doc{n:05d}.txt").write_bytes(data)
        total += len(data)
        n += 1
    return n


def rss_parts() -> dict[str, float]:
    """Anonymous (heap: can't be reclaimed) vs file-backed (mmap'd store files: page cache) RSS, in MB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    key, value, _ = line.split()
                    out[key.rstrip(":")] = round(int(value) / 1000, 1)
    except OSError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    ap.add_argument("--limit-s", type=float, default=0, help="cancel the ingestion after this many seconds")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil

    from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings

    proc = psutil.Process()
    work = Path(tempfile.mkdtemp(prefix="bubble-bench-mem-"))
    try:
        t = time.perf_counter()
        files = make_folder(work / "corpus", args.mb)
        made_s = time.perf_counter() - t
        rss_start = proc.memory_info().rss
        embedder: Any = HashEmbedder() if args.embedder == "hash" else SentenceTransformerEmbedder("")
        if args.embedder == "minilm":
            embedder.embed(["warm up"])
        rss_model = proc.memory_info().rss
        peak = [rss_model]
        stop = threading.Event()

        peak_anon = [0.0]

        def sample() -> None:
            while not stop.wait(0.2):
                peak[0] = max(peak[0], proc.memory_info().rss)
                peak_anon[0] = max(peak_anon[0], rss_parts().get("RssAnon", 0.0))

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        marks: dict[int, dict[str, float]] = {}
        cancel = threading.Event()
        started = time.perf_counter()

        def progress(p: Any) -> None:
            tenth = p.files_done * 10 // max(1, p.files_total)
            if tenth not in marks:
                marks[tenth] = {"rss": round(proc.memory_info().rss / 1e6, 1), **rss_parts()}
            if args.limit_s and time.perf_counter() - started > args.limit_s:
                cancel.set()

        svc = KnowledgeService(Paths.under(work / "home"), KnowledgeSettings(), embedder=embedder)
        try:
            svc.create_base("mem")
            report = svc.add_paths("mem", [work / "corpus"], progress=progress, cancel=cancel)
            elapsed = time.perf_counter() - started
            rss_end = proc.memory_info().rss
        finally:
            svc.close()
            stop.set()
            sampler.join(2)
        peak[0] = max(peak[0], rss_end)
        shard = work / "home" / "data" / "knowledge"
        print(
            json.dumps(
                {
                    "embedder": args.embedder,
                    "folder_mb": args.mb,
                    "files": files,
                    "make_folder_s": round(made_s, 1),
                    "files_indexed": len(report.indexed),
                    "chunks": report.chunks_added,
                    "cancelled": report.cancelled,
                    "ingest_s": round(elapsed, 1),
                    "chunks_per_s": round(report.chunks_added / elapsed, 1),
                    "rss_start_mb": round(rss_start / 1e6, 1),
                    "rss_after_model_mb": round(rss_model / 1e6, 1),
                    "rss_peak_mb": round(peak[0] / 1e6, 1),
                    "rss_end_mb": round(rss_end / 1e6, 1),
                    "rss_anon_peak_mb": peak_anon[0],
                    "rss_by_tenth_of_files_mb": marks,
                    "knowledge_dir_mb": round(
                        sum(f.stat().st_size for f in shard.rglob("*") if f.is_file()) / 1e6, 1
                    ),
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
