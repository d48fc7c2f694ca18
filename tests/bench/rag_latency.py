"""Send -> first prompt token entering the model: retrieval, web and prompt assembly, at 10k chunks.

    .venv/bin/python tests/bench/rag_latency.py [--chunks 10000] [--queries 30] [--model MODEL_DIR]

A knowledge base of >= ``--chunks`` chunks is built in a temp folder (Qdrant Edge, hybrid dense + BM25).
Ingestion uses a hash embedder (384-d, so 10k chunks index in seconds); queries use the real MiniLM, and
the query embedding is timed separately (``KnowledgeService.last_search_stats``) because the target
excludes it. Web search runs through ``DdgsSearcher`` with the recorded provider (cache cleared per query).
Each query goes through ``ChatService.ask`` with a model wrapper that stamps the moment ``stream()``
receives the prompt. Target: retrieval (without query embedding) + assembly <= 100 ms. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the a of to and in is for on with as by at from that this it be are was were has have model data "
    "search index file text knowledge local private answer question user system vector chunk embedding "
    "document paragraph sentence language network memory thread store query result score retrieval "
    "lighthouse harbour ferry island festival beacon engineer prize winter summer river bridge market"
).split()
QUERIES = [
    "Who won the Vellamo Prize in 2019?",
    "When does the ferry leave the harbour?",
    "How is the knowledge base searched?",
    "What did the engineer design for the island?",
    "Which festival happens in winter?",
    "Where is the beacon?",
]


class HashEmbedder:
    """Deterministic pseudo-random unit vectors: fast stand-in for indexing 10k chunks."""

    name = "all-MiniLM-L6-v2"  # the base records the configured model; queries use the real one
    dim = 384

    def embed(self, texts: Any) -> Any:
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            v = np.random.default_rng(zlib.crc32(t.encode("utf-8"))).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out

    def coverage(self, text: str) -> float:
        return 1.0


def make_corpus(root: Path, files: int, paragraphs: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        paras = []
        for _ in range(paragraphs):
            words = [rng.choice(WORDS) for _ in range(rng.randint(55, 75))]
            paras.append(" ".join(words).capitalize() + ".")
        (root / f"doc{f:05d}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    (root / "vellamo.md").write_text(
        "# The Vellamo Prize\n\n"
        "The Vellamo Prize for lighthouse engineering was won in 2019 by Ottilie Brask.\n",
        encoding="utf-8",
    )


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(pct(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


class StampingModel:
    """Wraps a ChatModel; records when stream() gets the prompt and generates nothing."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.info = inner.info
        self.stamp = 0.0

    def count_tokens(self, messages: Any) -> int:
        return int(self.inner.count_tokens(messages))

    def count_text_tokens(self, text: str) -> int:
        return int(self.inner.count_text_tokens(text))

    def stream(self, messages: Any, sampling: Any, cancel: threading.Event | None = None) -> Any:
        from bubble_desktop.core.llm.base import Generation, GenerationStats

        self.stamp = time.perf_counter()
        gen = Generation(iter(()))
        gen.stats = GenerationStats(prompt_tokens=self.count_tokens(messages), finish_reason="stop")
        return gen

    def unload(self) -> None:
        self.inner.unload()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--model", help="chat model folder for token counting (default: a tiny model built here)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.kb.chunking import chunk_segments
    from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder
    from bubble_desktop.core.kb.parsers import parse_file
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.llm.base import LoadRequest
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings
    from bubble_desktop.core.web.search import DdgsSearcher
    from tests.core.test_web_search import RecordedProvider

    work = Path(tempfile.mkdtemp(prefix="bubble-bench-rag-"))
    try:
        paths = Paths.under(work / "home").ensure()
        settings = Settings()
        settings.sampling.max_new_tokens = 256
        corpus = work / "corpus"
        paragraphs = 50
        make_corpus(corpus, 1, paragraphs)
        per_file = len(
            chunk_segments(
                parse_file(corpus / "doc00000.txt").segments,
                settings.knowledge.chunk_size,
                settings.knowledge.chunk_overlap,
            )
        )
        files = -(-args.chunks * 103 // 100 // per_file)  # files differ a little in chunk count
        make_corpus(corpus, files, paragraphs)

        t0 = time.perf_counter()
        with KnowledgeService(paths, settings.knowledge, embedder=HashEmbedder()) as kb:
            kb.create_base("bench")
            report = kb.add_paths("bench", [corpus])
            kb.optimize("bench")
        ingest_s = time.perf_counter() - t0

        if args.model:
            inner = load_model(LoadRequest(path=args.model, device="cpu"))
            model_name = args.model
        else:
            from tests.fixtures.tiny_models import build_tiny_model

            inner = load_model(LoadRequest(path=str(build_tiny_model(work / "tiny", "llama")), device="cpu"))
            model_name = "tiny-llama (built here)"
        model = StampingModel(inner)

        embedder = SentenceTransformerEmbedder("")
        embedder.embed(["warm up"])
        with (
            KnowledgeService(paths, settings.knowledge, embedder=embedder) as kb,
            ConversationStore(paths.chats_db) as store,
        ):
            searcher = DdgsSearcher(RecordedProvider())
            service = ChatService(paths, kb, searcher, store)
            service.ask(model, QUERIES[0], settings, kb_names=["bench"]).run()  # warm-up
            rows: dict[str, list[float]] = {
                k: []
                for k in (
                    "query_embed",
                    "retrieval_total",
                    "retrieval_excl_embed",
                    "assembly",
                    "send_to_model",
                    "send_to_model_excl_embed",
                    "web",
                    "send_to_model_with_web",
                    "target_sum",
                )
            }
            hits_found = 0
            for i in range(args.queries):
                q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" ({i})")
                sent = time.perf_counter()
                answer = service.ask(model, q, settings, kb_names=["bench"])
                to_model = model.stamp - sent
                answer.run()
                stats = kb.last_search_stats
                embed_s = stats.embed_s if stats else 0.0
                retrieval = answer.timings["retrieval_s"]
                rows["query_embed"].append(embed_s)
                rows["retrieval_total"].append(retrieval)
                rows["retrieval_excl_embed"].append(retrieval - embed_s)
                rows["assembly"].append(answer.timings["assembly_s"])
                rows["send_to_model"].append(to_model)
                rows["send_to_model_excl_embed"].append(to_model - embed_s)
                rows["target_sum"].append(retrieval - embed_s + answer.timings["assembly_s"])
                hits_found += len(answer.sources)

                searcher.clear_cache()
                sent = time.perf_counter()
                answer = service.ask(model, q, settings, kb_names=["bench"], web=True)
                rows["send_to_model_with_web"].append(model.stamp - sent)
                rows["web"].append(answer.timings["web_s"])
                answer.run()
        model.unload()
        target = summary(rows["target_sum"])
        result = {
            "bench": "rag_latency",
            "chunks": report.chunks_added,
            "files": len(report.indexed),
            "ingest_s_hash_embedder": round(ingest_s, 2),
            "queries": args.queries,
            "top_k": settings.knowledge.top_k,
            "hybrid": settings.knowledge.hybrid,
            "model_for_token_counting": model_name,
            "sources_per_answer": round(hits_found / args.queries, 2),
            **{k: summary(v) for k, v in rows.items()},
            "target": "retrieval (without query embedding) + assembly <= 100 ms",
            "target_met_p95": target["p95_ms"] <= 100.0,
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
