"""Calibrates "minimum relevance" (core/kb/relevance.py) on a mixed English/Chinese question set; prints JSON.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/relevance.py [--top-k 4]

The corpus (tests/fixtures/relevance_corpus.py): 12 short documents, 8 English and 4 Chinese;
27 questions each answered by one document (9 of them Chinese, 2 English questions about Chinese
documents) and 18 requests that no document answers ("Write me an essay about autumn",
"写一首关于春天的诗"). Real parts: the built-in MiniLM embedder, a Qdrant Edge shard on disk, hybrid
search as the chat uses it. For every threshold on the relevance, the fused RRF score, and the
relevance relative to the best hit:

- ``precision``: kept sources that come from the answering document / all kept sources (off-topic
  requests' kept sources count as wrong);
- ``recall``: questions that keep at least one source from the answering document / questions;
- ``source_recall``: kept sources from the answering document / those retrieved at threshold 0;
- ``off_topic_empty``: off-topic requests left with no source at all;
- per language (``en``: English questions, ``zh``: Chinese).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fixtures.relevance_corpus import OFF_TOPIC, QUESTIONS, write_corpus  # noqa: E402


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def collect(top_k: int) -> tuple[list[dict[str, Any]], float]:
    """Every question's hits at threshold 0 with their scores."""
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings

    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.under(Path(tmp) / "home").ensure()
        docs = write_corpus(Path(tmp) / "docs")
        with KnowledgeService(paths, KnowledgeSettings()) as svc:
            svc.create_base("kb")
            report = svc.add_paths("kb", [docs])
            assert report.ok, report
            rows = []
            t0 = time.perf_counter()
            queries = [(q, Path(doc).name) for q, doc in QUESTIONS.items()] + [(q, None) for q in OFF_TOPIC]
            for query, answer in queries:
                hits = svc.search("kb", query, top_k=top_k, min_relevance=0.0)
                rows.append(
                    {
                        "query": query,
                        "answer": answer,
                        "lang": "zh" if is_chinese(query) else "en",
                        "hits": [
                            {
                                "doc": Path(h.path).name,
                                "fused": round(h.score, 4),
                                "similarity": None if h.similarity is None else round(h.similarity, 4),
                                "keyword": None if h.keyword is None else round(h.keyword, 4),
                                "relevance": round(h.relevance or 0.0, 4),
                            }
                            for h in hits
                        ],
                    }
                )
            per_query = (time.perf_counter() - t0) / len(queries)
    return rows, per_query


def evaluate(rows: list[dict[str, Any]], keep: Any) -> dict[str, Any]:
    """Precision/recall when ``keep(hit, hits)`` decides which hits stay."""
    out: dict[str, Any] = {}
    for lang in ("all", "en", "zh"):
        sel = [r for r in rows if lang == "all" or r["lang"] == lang]
        kept_total = kept_right = answered = questions = empty_off = off = 0
        right_at_0 = right_kept = 0
        for r in sel:
            kept = [h for h in r["hits"] if keep(h, r["hits"])]
            kept_total += len(kept)
            if r["answer"] is None:
                off += 1
                empty_off += not kept
                continue
            questions += 1
            right = [h for h in kept if h["doc"] == r["answer"]]
            kept_right += len(right)
            answered += bool(right)
            right_at_0 += sum(h["doc"] == r["answer"] for h in r["hits"])
            right_kept += len(right)
        out[lang] = {
            "precision": round(kept_right / kept_total, 3) if kept_total else None,
            "recall": round(answered / questions, 3) if questions else None,
            "source_recall": round(right_kept / right_at_0, 3) if right_at_0 else None,
            "off_topic_empty": f"{empty_off}/{off}",
            "sources_kept": kept_total,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--rows", action="store_true", help="print every question's hits too")
    args = parser.parse_args()

    from bubble_desktop.core.settings import DEFAULT_MIN_RELEVANCE

    rows, per_query = collect(args.top_k)
    steps = [round(0.05 * i, 2) for i in range(0, 13)]
    result: dict[str, Any] = {
        "top_k": args.top_k,
        "questions": len(QUESTIONS),
        "off_topic": len(OFF_TOPIC),
        "search_ms_per_query": round(per_query * 1000, 1),
        "default": DEFAULT_MIN_RELEVANCE,
        "at_default": evaluate(rows, lambda h, _hs: h["relevance"] >= DEFAULT_MIN_RELEVANCE),
        "old_default_0": evaluate(rows, lambda h, _hs: True),
        "relevance": {str(t): evaluate(rows, lambda h, _hs, t=t: h["relevance"] >= t)["all"] for t in steps},
        "fused_rrf": {
            str(t): evaluate(rows, lambda h, _hs, t=t: h["fused"] >= t)["all"]
            for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
        },
        "relative_to_best_fused": {
            str(t): evaluate(rows, lambda h, hs, t=t: h["fused"] >= t * max(x["fused"] for x in hs))["all"]
            for t in (0.3, 0.5, 0.7, 0.9)
        },
    }
    if args.rows:
        result["rows"] = rows
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
