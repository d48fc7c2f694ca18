"""Retrieval latency (excluding the query embedding) and reopen time: Qdrant Edge, Milvus Lite,
qdrant-client local mode.

    .venv/bin/python tests/bench/retrieval.py --sizes 10000 100000 --local-max 10000
    .venv/bin/python tests/bench/retrieval.py --sizes 10000 --backend edge milvus-lite

``--backend`` picks the stores (default: edge and qdrant-local, as before; ``service_edge`` runs with
edge). Milvus Lite gets the same points through :class:`MilvusStore` (its BM25 function analyzes the
text itself; the "optimize" step is its flush).

Random unit vectors (384-d, like MiniLM) with real BM25 sparse vectors of synthetic ~300-character
chunk texts and the real payload shape. For each size: upsert, optimize, query p50/p95 (dense only and
hybrid RRF) through the same store class the service uses, the same through ``KnowledgeService.search``
with a precomputed ``query_vector`` (adds the owner-thread hop and hit building), then close and reopen
(open + first query). qdrant-client's local mode gets the same data and queries, capped at
``--local-max`` points because it stores one SQLite row per point and searches by brute force.
Targets at 100k: p50 <= 10 ms, reopen <= 1 s. Prints JSON.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.ingest import WORDS  # noqa: E402

DIM = 384


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ms(v: float) -> float:
    return round(v * 1000, 3)


def make_data(n: int, seed: int = 1):
    import numpy as np

    from bubble_desktop.core.kb.store import StoredPoint, point_id, sparse_document

    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    r = random.Random(seed)
    points = []
    for i in range(n):
        text = " ".join(r.choice(WORDS) for _ in range(50))
        doc = f"doc{i // 50}"
        points.append(
            StoredPoint(
                point_id(doc, i % 50),
                vecs[i],
                sparse_document(text),
                {
                    "doc_id": doc,
                    "path": f"/data/{doc}.txt",
                    "type": "text",
                    "chunk": i % 50,
                    "text": text,
                    "position": f"line {i % 50 + 1}",
                    "heading": None,
                    "title": None,
                },
            )
        )
    return points


def make_queries(count: int, seed: int = 2):
    import numpy as np

    from bubble_desktop.core.kb.store import sparse_query

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((count, DIM), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r = random.Random(seed)
    out = []
    for i in range(count):
        text = " ".join(r.choice(WORDS) for _ in range(4))
        out.append((q[i].tolist(), sparse_query(text), text))
    return out


def time_queries(store, queries, hybrid: bool, k: int = 4) -> dict[str, float]:
    lat = []
    for dense, sparse, text in queries:
        t = time.perf_counter()
        store.search(dense, sparse if hybrid else None, k, None, None, text=text)
        lat.append(time.perf_counter() - t)
    return {"p50_ms": ms(statistics.median(lat)), "p95_ms": ms(pct(lat, 0.95))}


def upsert_all(store, points, batch: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(points), batch):
        store.upsert(points[i : i + batch])
    return time.perf_counter() - t


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_edge(points, queries, work: Path) -> dict[str, object]:
    from bubble_desktop.core.kb.store import EdgeStore

    path = work / "edge"
    store = EdgeStore(path, DIM)
    out: dict[str, object] = {"upsert_s": round(upsert_all(store, points, 1000), 3)}
    t = time.perf_counter()
    store.optimize()
    out["optimize_s"] = round(time.perf_counter() - t, 3)
    time_queries(store, queries[:20], True)  # warm-up
    out["dense"] = time_queries(store, queries, hybrid=False)
    out["hybrid"] = time_queries(store, queries, hybrid=True)
    store.close()
    t = time.perf_counter()
    store = EdgeStore(path, DIM)
    store.search(queries[0][0], queries[0][1], 4, None, None)
    out["reopen_s"] = round(time.perf_counter() - t, 3)
    out["count_after_reopen"] = store.count()
    store.close()
    out["disk_mb"] = round(du(path) / 1e6, 1)
    return out


def bench_service(queries, work: Path) -> dict[str, object]:
    """The same data behind KnowledgeService.search(query_vector=...): what the chat service sees."""
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings

    svc = KnowledgeService(Paths.under(work / "svc-home"), KnowledgeSettings())
    try:
        svc.create_base("bench")
        # adopt the optimized shard bench_edge built (a second index build would double the run time)
        base = svc._call(lambda: svc._base("bench"))
        svc._call(lambda: base.catalog.set(dim=str(DIM)))
        shutil.move(str(work / "edge"), str(base.folder / "shard"))
        out = {}
        for hybrid in (False, True):
            lat = []
            for dense, _, _ in queries:
                t = time.perf_counter()
                svc.search("bench", "index search query", top_k=4, hybrid=hybrid, query_vector=dense)
                lat.append(time.perf_counter() - t)
            out["hybrid" if hybrid else "dense"] = {
                "p50_ms": ms(statistics.median(lat)),
                "p95_ms": ms(pct(lat, 0.95)),
            }
        return out
    finally:
        svc.close()


def bench_milvus_lite(points, queries, work: Path) -> dict[str, object]:
    from bubble_desktop.core.kb.milvus_store import MilvusStore

    path = work / "milvus.db"
    store = MilvusStore.open_lite(path, DIM, "standard")
    out: dict[str, object] = {"upsert_s": round(upsert_all(store, points, 1000), 3)}
    t = time.perf_counter()
    store.flush()
    out["optimize_s"] = round(time.perf_counter() - t, 3)
    # Lite builds a flushed segment's HNSW index after the flush: the first queries pay for it
    out["first_pass"] = {
        "dense": time_queries(store, queries, hybrid=False),
        "hybrid": time_queries(store, queries, hybrid=True),
    }
    out["dense"] = time_queries(store, queries, hybrid=False)
    out["hybrid"] = time_queries(store, queries, hybrid=True)
    store.close()
    t = time.perf_counter()
    store = MilvusStore.open_lite(path, DIM)
    store.search(queries[0][0], queries[0][1], 4, None, None, text=queries[0][2])
    out["reopen_s"] = round(time.perf_counter() - t, 3)
    out["count_after_reopen"] = store.count()
    store.close()
    out["disk_mb"] = round(du(path) / 1e6, 1)
    return out


def bench_local(points, queries, work: Path) -> dict[str, object]:
    from bubble_desktop.core.kb.store import ServerStore

    path = work / "qdrant-local"
    store = ServerStore.connect(str(path), "", "bench", DIM)
    out: dict[str, object] = {"upsert_s": round(upsert_all(store, points, 256), 3)}
    out["dense"] = time_queries(store, queries, hybrid=False)
    out["hybrid"] = time_queries(store, queries, hybrid=True)
    store.close()
    t = time.perf_counter()
    store = ServerStore.connect(str(path), "", "bench", DIM)
    store.search(queries[0][0], queries[0][1], 4, None, None)
    out["reopen_s"] = round(time.perf_counter() - t, 3)
    store.close()
    out["disk_mb"] = round(du(path) / 1e6, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--local-max", type=int, default=10_000, help="cap for qdrant-client local mode")
    ap.add_argument(
        "--backend",
        nargs="+",
        choices=("edge", "milvus-lite", "qdrant-local"),
        default=["edge", "qdrant-local"],
        help="stores to measure, side by side on the same data",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    queries = make_queries(args.queries)
    results = []
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bubble-bench-retrieval-{n}-"))
        try:
            t = time.perf_counter()
            points = make_data(n)
            row: dict[str, object] = {"points": n, "make_data_s": round(time.perf_counter() - t, 1)}
            if "edge" in args.backend:
                row["edge"] = bench_edge(points, queries, work)
                row["service_edge"] = bench_service(queries, work)
            if "milvus-lite" in args.backend:
                row["milvus_lite"] = bench_milvus_lite(points, queries, work)
            if "qdrant-local" not in args.backend:
                pass
            elif n <= args.local_max:
                row["qdrant_client_local"] = bench_local(points, queries, work)
            else:
                row["qdrant_client_local"] = f"skipped above {args.local_max} points (too slow to run here)"
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "dim": DIM,
                "queries": args.queries,
                "targets_at_100k": "p50 <= 10 ms, reopen <= 1 s",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
