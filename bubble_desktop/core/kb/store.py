"""Vector stores: a Qdrant Edge shard per knowledge base, or a collection on a Qdrant server
(Milvus, the other engine, is in milvus_store.py).

Both use the same layout: a named dense vector ``dense`` (cosine) and a sparse vector ``bm25``
(Edge's ``Bm25`` with the multilingual tokenizer, which segments Chinese) with the IDF modifier.
Queries fuse dense + sparse by RRF. Each store has exactly one owner thread (see service.py);
these classes are not thread-safe on their own.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bubble_desktop.core.errors import KnowledgeBaseError, StoreLockedError
from bubble_desktop.core.native import release_freed_memory

log = logging.getLogger(__name__)

DENSE = "dense"
SPARSE = "bm25"
RRF_K = 2  # Qdrant's default; with k=60 the dense weight (see service.search) barely moves ranks
PREFETCH_FACTOR = 4
# Segments a rotated shard may keep before Edge merges them (merging rewrites them: slower rotations).
SEGMENTS = 64
_POINT_NS = uuid.UUID("6f0c4b1e-3d0a-4b8e-9a57-b0bb1e000001")
_bm25_local = threading.local()


def point_id(doc_id: str, chunk_index: int, content_hash: str = "") -> str:
    """Deterministic point id of one chunk of one version of a document.

    The version (content hash) is part of the id, so a new version of a document is written beside
    the old one, which is deleted only once the new one is complete (``keep_hash``). Points
    written before versions were in the id (no ``content_hash``) keep their old ids.
    """
    key = f"{doc_id}:{chunk_index}" if not content_hash else f"{doc_id}@{content_hash}:{chunk_index}"
    return str(uuid.uuid5(_POINT_NS, key))


def _bm25() -> Any:
    model = getattr(_bm25_local, "model", None)
    if model is None:
        from qdrant_edge import Bm25, Bm25Config, TokenizerType

        model = Bm25(Bm25Config(tokenizer=TokenizerType.Multilingual))
        _bm25_local.model = model
    return model


def sparse_document(text: str) -> tuple[list[int], list[float]]:
    """BM25 term-frequency weights of a chunk (IDF is applied by the store at query time)."""
    v = _bm25().embed_document(text)
    return list(v.indices), list(v.values)


def sparse_query(text: str) -> tuple[list[int], list[float]]:
    v = _bm25().embed_query(text)
    return list(v.indices), list(v.values)


@dataclass(frozen=True)
class StoredPoint:
    id: str
    dense: Sequence[float]
    sparse: tuple[Sequence[int], Sequence[float]]
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredHit:
    """A search result; ``dense`` and ``terms`` (its BM25 term ids) let the service judge relevance."""

    score: float
    payload: dict[str, Any]
    dense: Sequence[float] | None = None
    terms: frozenset[int] = frozenset()


class VectorStore(Protocol):
    """What the knowledge service needs from a store; Edge and server implement it."""

    def upsert(self, points: Sequence[StoredPoint]) -> None: ...
    def delete_document(
        self, doc_id: str, keep_hash: str | None = None, only_hash: str | None = None
    ) -> None:
        """Delete a document's points; with ``keep_hash`` all but that version, with ``only_hash``
        only that version."""
        ...

    def export_document(self, doc_id: str) -> list[StoredPoint]:
        """Every point of a document, vectors included (to carry it into a rebuilt index)."""
        ...

    def search(
        self,
        dense: Sequence[float],
        sparse: tuple[Sequence[int], Sequence[float]] | None,
        limit: int,
        score_threshold: float | None,
        doc_ids: Sequence[str] | None,
        dense_weight: float = 1.0,
        text: str | None = None,
    ) -> list[StoredHit]:
        """``sparse`` given: hybrid. ``text`` is the query itself (for stores that analyze it)."""
        ...

    def count(self) -> int: ...
    def flush(self) -> None: ...
    def optimize(self) -> None: ...
    def close(self) -> None: ...
    def drop(self) -> None: ...


# ---------------------------------------------------------------------------------------------- Edge


class EdgeStore:
    """A qdrant-edge-py shard in a folder. Opening a shard another process holds raises StoreLockedError."""

    def __init__(self, path: Path, dim: int, create_in_child: bool = False) -> None:
        """Open the shard in ``path``, creating it when there is none.

        ``create_in_child``: create a new shard in a spawned child process, then load it here. The
        binding holds the GIL while it creates a shard and its ``doc_id`` index (0.1-0.6 s of file
        writes and syncs on a busy disk), which froze the GUI on the first drop into a new base.
        """
        from qdrant_edge import EdgeShard

        self.path = path
        self.dim = dim
        try:
            if not _shard_exists(path):
                path.mkdir(parents=True, exist_ok=True)
                if create_in_child:
                    _create_in_child(path, dim)
            if _shard_exists(path):
                self._shard = EdgeShard.load(str(path))
            else:
                self._shard = _new_shard(str(path), dim)
        except Exception as exc:  # noqa: BLE001 - the binding raises a bare Exception
            text = str(exc)
            if "WouldBlock" in text or "lock" in text.lower():
                raise StoreLockedError(
                    f"Another Bubble is using this knowledge base ({path.parent.name})."
                ) from None
            raise KnowledgeBaseError(
                f"The knowledge base store at {path} could not be opened: "
                f"{text.splitlines()[0] if text else repr(exc)}",
                "If it keeps failing, delete and re-create the knowledge base.",
            ) from None

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        from qdrant_edge import Point, SparseVector, UpdateOperation

        if not points:
            return
        pts = [
            Point(
                p.id,
                {
                    DENSE: list(map(float, p.dense)),
                    SPARSE: SparseVector(list(p.sparse[0]), list(p.sparse[1])),
                },
                p.payload,
            )
            for p in points
        ]
        self._shard.update(UpdateOperation.upsert_points(pts))

    def delete_document(
        self, doc_id: str, keep_hash: str | None = None, only_hash: str | None = None
    ) -> None:
        from qdrant_edge import FieldCondition, Filter, MatchValue, UpdateOperation

        must: list[Any] = [FieldCondition("doc_id", match=MatchValue(doc_id))]
        must_not: list[Any] = []
        if only_hash is not None:
            must.append(FieldCondition("hash", match=MatchValue(only_hash)))
        if keep_hash is not None:
            must_not.append(FieldCondition("hash", match=MatchValue(keep_hash)))
        self._shard.update(
            UpdateOperation.delete_points_by_filter(Filter(must=must, must_not=must_not or None))
        )

    def export_document(self, doc_id: str) -> list[StoredPoint]:
        from qdrant_edge import FieldCondition, Filter, MatchValue, ScrollRequest

        flt = Filter(must=[FieldCondition("doc_id", match=MatchValue(doc_id))])
        out: list[StoredPoint] = []
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                ScrollRequest(offset=offset, limit=256, filter=flt, with_payload=True, with_vector=True)
            )
            out.extend(_stored_point(r.id, r.vector, r.payload) for r in records)
            if offset is None or not records:
                return out

    def search(
        self,
        dense: Sequence[float],
        sparse: tuple[Sequence[int], Sequence[float]] | None,
        limit: int,
        score_threshold: float | None,
        doc_ids: Sequence[str] | None,
        dense_weight: float = 1.0,
        text: str | None = None,
    ) -> list[StoredHit]:
        from qdrant_edge import (
            FieldCondition,
            Filter,
            Fusion,
            MatchAny,
            Prefetch,
            Query,
            QueryRequest,
            SparseVector,
        )

        flt = Filter(must=[FieldCondition("doc_id", match=MatchAny(list(doc_ids)))]) if doc_ids else None
        dense_q = Query.Nearest([float(x) for x in dense], using=DENSE)
        if sparse is None:
            req = QueryRequest(
                limit=limit,
                query=dense_q,
                filter=flt,
                score_threshold=score_threshold,
                with_payload=True,
                with_vector=[DENSE, SPARSE],
            )
        else:
            sq = Query.Nearest(SparseVector(list(sparse[0]), list(sparse[1])), using=SPARSE)
            n = max(limit * PREFETCH_FACTOR, 20)
            req = QueryRequest(
                limit=limit,
                prefetches=[
                    Prefetch(limit=n, query=dense_q, filter=flt, score_threshold=score_threshold),
                    Prefetch(limit=n, query=sq, filter=flt),
                ],
                query=Fusion.Rrf(  # type: ignore[arg-type]  # the stub lists Fusion, not its Rrf class
                    k=RRF_K, weights=None if dense_weight == 1.0 else [dense_weight, 1.0]
                ),
                filter=flt,
                with_payload=True,
                with_vector=[DENSE, SPARSE],
            )
        return [_stored_hit(p.score, p.vector, p.payload) for p in self._shard.query(req)]

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self._shard.count(CountRequest(exact=True)))

    def unindexed(self) -> int:
        """Points not yet in an HNSW index (searched by brute force until optimized).

        After :meth:`rotate` the segments are "indexed" without a graph (m=0): all points count
        as unindexed until :func:`optimize_folder` builds the graph in a child process.
        """
        info = self._shard.info()
        points = int(info.points_count)
        if not graph_configured(self.path):
            return points
        return max(0, points - int(info.indexed_vectors_count))

    def rotate(self) -> None:
        """Move the appendable segment's points into an immutable, memory-mapped segment.

        The appendable (writable) segment keeps ~1 KB per point on the heap (id tracker, sparse
        inverted index, payload index) and Edge has no background optimizer, so a long ingestion
        would grow without bound. Optimizing with an HNSW ``m`` of 0 converts the segment without
        building a graph (~1 s per 25k points on 2 cores; with a graph ~30 s) and the heap drops back. The
        graph is built later by :func:`optimize_folder` in a child process.
        """
        import time

        from qdrant_edge import EdgeShard

        started = time.perf_counter()
        self._shard.flush()
        self._shard.close()
        self._shard = None  # type: ignore[assignment]
        try:
            self._shard = EdgeShard.load(str(self.path), edge_config(self.dim, graph_m=0))
            self._shard.optimize()
            self._shard.flush()
        except Exception:  # noqa: BLE001 - a failed rotation only costs memory; keep the shard usable
            log.exception("rotating the writable segment of %s failed", self.path)
            if self._shard is None:
                self._shard = EdgeShard.load(str(self.path))
            return
        finally:
            release_freed_memory(collect=False)
        log.info("rotated the writable segment of %s in %.2f s", self.path, time.perf_counter() - started)

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> None:
        self._shard.optimize()

    def close(self) -> None:
        shard, self._shard = self._shard, None  # type: ignore[assignment]
        if shard is not None:
            try:
                shard.flush()
            finally:
                shard.close()

    def drop(self) -> None:
        import shutil

        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


# -------------------------------------------------------------------------------------- Qdrant server


class ServerStore:
    """A collection on a Qdrant server (or qdrant-client's local mode) with the Edge layout."""

    def __init__(self, client: Any, collection: str, dim: int, payload_index: bool = True) -> None:
        from qdrant_client import models

        self._client = client
        self.collection = collection
        self.dim = dim
        try:
            exists = client.collection_exists(collection)
            if not exists:
                client.create_collection(
                    collection,
                    vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
                if payload_index:  # local mode has none (it warns); its filters work without
                    client.create_payload_index(collection, "doc_id", models.PayloadSchemaType.KEYWORD)
        except Exception as exc:  # noqa: BLE001 - network, auth and server errors
            raise KnowledgeBaseError(
                f"The Qdrant server could not be used: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                "Check the Qdrant URL and API key in Settings → Knowledge, or clear the URL to keep "
                "knowledge bases on this computer.",
            ) from None

    @classmethod
    def connect(cls, url: str, api_key: str, collection: str, dim: int) -> ServerStore:
        from qdrant_client import QdrantClient

        remote = url.startswith(("http://", "https://"))
        if remote:
            client = QdrantClient(url=url, api_key=api_key or None, timeout=30)
        elif url == ":memory:":
            client = QdrantClient(location=":memory:")
        else:  # a folder: qdrant-client's local mode (a fallback; slow beyond ~20k points)
            client = QdrantClient(path=url.removeprefix("file://"))
        return cls(client, collection, dim, payload_index=remote)

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        self._client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: [float(x) for x in p.dense],
                        SPARSE: models.SparseVector(indices=list(p.sparse[0]), values=list(p.sparse[1])),
                    },
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete_document(
        self, doc_id: str, keep_hash: str | None = None, only_hash: str | None = None
    ) -> None:
        from qdrant_client import models

        must: list[Any] = [models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]
        must_not: list[Any] = []
        if only_hash is not None:
            must.append(models.FieldCondition(key="hash", match=models.MatchValue(value=only_hash)))
        if keep_hash is not None:
            must_not.append(models.FieldCondition(key="hash", match=models.MatchValue(value=keep_hash)))
        self._client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=must, must_not=must_not or None)),
            wait=True,
        )

    def export_document(self, doc_id: str) -> list[StoredPoint]:
        from qdrant_client import models

        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
        out: list[StoredPoint] = []
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            out.extend(_stored_point(r.id, r.vector, r.payload) for r in records)
            if offset is None or not records:
                return out

    def search(
        self,
        dense: Sequence[float],
        sparse: tuple[Sequence[int], Sequence[float]] | None,
        limit: int,
        score_threshold: float | None,
        doc_ids: Sequence[str] | None,
        dense_weight: float = 1.0,
        text: str | None = None,
    ) -> list[StoredHit]:
        from qdrant_client import models

        flt = (
            models.Filter(
                must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))]
            )
            if doc_ids
            else None
        )
        dvec = [float(x) for x in dense]
        if sparse is None:
            res = self._client.query_points(
                self.collection,
                query=dvec,
                using=DENSE,
                limit=limit,
                query_filter=flt,
                score_threshold=score_threshold,
                with_payload=True,
                with_vectors=[DENSE, SPARSE],
            )
        else:
            n = max(limit * PREFETCH_FACTOR, 20)
            res = self._client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(
                        query=dvec, using=DENSE, limit=n, filter=flt, score_threshold=score_threshold
                    ),
                    models.Prefetch(
                        query=models.SparseVector(indices=list(sparse[0]), values=list(sparse[1])),
                        using=SPARSE,
                        limit=n,
                        filter=flt,
                    ),
                ],
                query=models.RrfQuery(
                    rrf=models.Rrf(k=RRF_K, weights=None if dense_weight == 1.0 else [dense_weight, 1.0])
                ),
                limit=limit,
                query_filter=flt,
                with_payload=True,
                with_vectors=[DENSE, SPARSE],
            )
        return [_stored_hit(p.score, p.vector, p.payload) for p in res.points]

    def count(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def flush(self) -> None:
        pass

    def optimize(self) -> None:
        pass

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def drop(self) -> None:
        try:
            self._client.delete_collection(self.collection)
        finally:
            self.close()


def _stored_hit(score: Any, vector: Any, payload: Any) -> StoredHit:
    """A scored point (Edge or qdrant-client) with its dense vector and BM25 term ids."""
    vectors = vector if isinstance(vector, dict) else {DENSE: vector} if vector is not None else {}
    dense = vectors.get(DENSE)
    sparse = vectors.get(SPARSE)
    terms = frozenset(int(i) for i in (getattr(sparse, "indices", None) or ()))
    return StoredHit(float(score), dict(payload or {}), list(dense) if dense is not None else None, terms)


def _stored_point(id_: Any, vector: Any, payload: Any) -> StoredPoint:
    """A scrolled record (Edge or qdrant-client) back into the shape :meth:`upsert` takes."""
    vectors = vector if isinstance(vector, dict) else {DENSE: vector}
    sparse = vectors.get(SPARSE)
    indices = list(getattr(sparse, "indices", []) or [])
    values = list(getattr(sparse, "values", []) or [])
    return StoredPoint(str(id_), list(vectors.get(DENSE) or []), (indices, values), dict(payload or {}))


# ------------------------------------------------------------------------------- optimizing a copy


def edge_config(dim: int, graph_m: int | None = None) -> Any:
    """The shard layout; ``graph_m`` (HNSW edges per node) is stored with the shard when given.

    The sparse index is ``Cold`` (memory-mapped) so immutable segments keep it off the heap.
    """
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeOptimizersConfig,
        EdgeSparseVectorParams,
        EdgeVectorParams,
        HnswIndexConfig,
        Memory,
        Modifier,
    )

    hnsw = None
    if graph_m is not None:  # Qdrant's defaults apart from m
        hnsw = HnswIndexConfig(m=graph_m, ef_construct=100, full_scan_threshold=10_000)
    return EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=dim, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf, memory=Memory.Cold)},
        hnsw_config=hnsw,
        optimizers=EdgeOptimizersConfig(default_segment_number=SEGMENTS) if graph_m == 0 else None,
        id_tracker_memory=Memory.Cold,
    )


def graph_configured(folder: Path) -> bool:
    """False when the shard in ``folder`` was last rotated (HNSW m=0): its segments have no graph."""
    import json

    try:
        config = json.loads((folder / "edge_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    hnsw = config.get("hnsw_config") if isinstance(config, dict) else None
    return not (isinstance(hnsw, dict) and hnsw.get("m") == 0)


def optimize_folder(folder: str, dim: int) -> None:
    """Child-process entry: build the HNSW index of the shard copy in ``folder``."""
    from qdrant_edge import EdgeShard

    shard = EdgeShard.load(folder, edge_config(dim, graph_m=16))
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()


def _shard_exists(path: Path) -> bool:
    return (path / "wal").exists() or any(path.glob("segments*"))


def _new_shard(folder: str, dim: int) -> Any:
    """Create an empty shard with its ``doc_id`` keyword index in ``folder``; returns it open."""
    from qdrant_edge import EdgeShard, PayloadSchemaType, UpdateOperation

    shard = EdgeShard.create(folder, edge_config(dim))
    try:
        shard.update(UpdateOperation.create_field_index("doc_id", PayloadSchemaType.Keyword))
    except BaseException:
        shard.close()
        raise
    return shard


def create_shard_folder(folder: str, dim: int) -> None:
    """Child-process entry: create an empty shard in ``folder``, flushed and closed."""
    shard = _new_shard(folder, dim)
    try:
        shard.flush()
    finally:
        shard.close()


def _spawn(target: Any, folder: Path, dim: int, name: str) -> Any:
    """Start ``target(str(folder), dim)`` in a spawned child process (a ``multiprocessing.Process``).
    The frozen entry points call ``multiprocessing.freeze_support()``, so this works in the
    PyInstaller build too."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    proc = context.Process(target=target, args=(str(folder), dim), name=name, daemon=True)
    proc.start()
    return proc


def _create_in_child(path: Path, dim: int) -> None:
    """Run :func:`create_shard_folder` in a spawned child and wait (the GIL stays free meanwhile).

    Best effort: when the child fails, the half-made folder is emptied and the caller creates the
    shard itself.
    """
    import shutil

    try:
        proc = _spawn(create_shard_folder, path, dim, "bubble-kb-create")
        proc.join()
        failed = proc.exitcode != 0
    except Exception:  # noqa: BLE001 - creating it in this process still works
        log.exception("creating the shard %s in a child process failed", path)
        failed = True
    if failed:
        log.warning("creating the shard %s in a child process failed; creating it here", path)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)


def start_optimizer(folder: Path, dim: int) -> Any:
    """Start ``optimize_folder`` in a spawned child process (a ``multiprocessing.Process``).

    ``EdgeShard.optimize()`` holds the GIL for its whole run (minutes at 100k points on 2 cores), which
    would freeze the GUI; in a child process it doesn't.
    """
    return _spawn(optimize_folder, folder, dim, "bubble-kb-optimize")


def recover_shard_folder(folder: Path) -> None:
    """Finish or undo a swap interrupted by a crash (shard -> shard.old, shard.optimized -> shard)."""
    import shutil

    old = folder.with_name(folder.name + ".old")
    copy = folder.with_name(folder.name + ".optimizing")
    if not folder.exists() and old.exists():
        old.rename(folder)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    if copy.exists():
        shutil.rmtree(copy, ignore_errors=True)
