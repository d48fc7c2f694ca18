"""Ingestion throughput: the whole pipeline against bare ``SentenceTransformer.encode`` on the same chunks.

    .venv/bin/python tests/bench/ingest.py --files 60 --seed-way

Same loaded MiniLM, same chunks, same batch size, measured side by side in one run:
bare encode, then the pipeline (parse + chunk + embed + BM25 + Qdrant Edge upsert + catalog), then bare
encode again; the ratio uses the mean of the two bare runs so load on the machine hits both alike.
Target: pipeline / bare >= 0.85. ``--seed-way`` adds the seed's approach on the same chunks: encode
one chunk, upsert one point with ``wait=True`` into qdrant-client's local mode, repeat.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the a of to and in is for on with as by at from that this it be are was were has have model data "
    "search index file text knowledge local private answer question user system vector chunk embedding "
    "document paragraph sentence language network memory thread store query result score retrieval "
    "python windows install folder settings window button error message quickly slowly often never "
    "always report progress cancel batch storage private offline computer"
).split()


def make_corpus(root: Path, files: int, paragraphs: int = 12, seed: int = 7) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        paras = []
        for _ in range(paragraphs):
            sents = []
            for _ in range(rng.randint(3, 7)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
                sents.append(" ".join(words).capitalize() + ".")
            paras.append(" ".join(sents))
        (root / f"doc{f:04d}.txt").write_text("\n\n".join(paras), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--seed-way", action="store_true", help="also time the seed's one-by-one way")
    ap.add_argument("--seed-way-max", type=int, default=400, help="chunks for the seed way (it is slow)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from bubble_desktop.core.kb.chunking import chunk_segments
    from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder
    from bubble_desktop.core.kb.parsers import iter_files, parse_file
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings

    work = Path(tempfile.mkdtemp(prefix="bubble-bench-ingest-"))
    try:
        corpus = work / "corpus"
        make_corpus(corpus, args.files)
        settings = KnowledgeSettings()
        chunks = [
            c.text
            for f in iter_files([corpus])
            for c in chunk_segments(parse_file(f).segments, settings.chunk_size, settings.chunk_overlap)
        ]
        embedder = SentenceTransformerEmbedder("")
        model = embedder._ensure()  # the same loaded model for every variant
        import torch

        model.encode(chunks[:64], batch_size=32, normalize_embeddings=True)  # warm-up

        def bare() -> float:
            t = time.perf_counter()
            model.encode(chunks, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            return time.perf_counter() - t

        bare1 = bare()
        svc = KnowledgeService(Paths.under(work / "home"), settings, embedder=embedder)
        try:
            svc.create_base("bench")
            t = time.perf_counter()
            report = svc.add_paths("bench", [corpus])
            pipe = time.perf_counter() - t
            assert report.chunks_added == len(chunks), (report.chunks_added, len(chunks))
        finally:
            svc.close()
        bare2 = bare()
        bare_s = (bare1 + bare2) / 2
        out: dict[str, object] = {
            "files": args.files,
            "chunks": len(chunks),
            "chars": sum(len(c) for c in chunks),
            "torch_threads": torch.get_num_threads(),
            "bare_encode_s": [round(bare1, 3), round(bare2, 3)],
            "bare_chunks_per_s": round(len(chunks) / bare_s, 2),
            "pipeline_s": round(pipe, 3),
            "pipeline_chunks_per_s": round(len(chunks) / pipe, 2),
            "pipeline_over_bare": round(bare_s / pipe, 3),
            "target": ">= 0.85",
        }
        if args.seed_way:
            from qdrant_client import QdrantClient, models

            n = min(args.seed_way_max, len(chunks))
            client = QdrantClient(path=str(work / "seed-local"))
            client.create_collection(
                "seed", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
            )
            t = time.perf_counter()
            for i, text in enumerate(chunks[:n]):
                vec = model.encode(text, normalize_embeddings=True).tolist()
                client.upsert(
                    "seed", points=[models.PointStruct(id=i, vector=vec, payload={"text": text})], wait=True
                )
            seed_s = time.perf_counter() - t
            client.close()
            out["seed_way_chunks"] = n
            out["seed_way_chunks_per_s"] = round(n / seed_s, 2)
            out["pipeline_over_seed_way"] = round((len(chunks) / pipe) / (n / seed_s), 2)
        print(json.dumps(out, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
