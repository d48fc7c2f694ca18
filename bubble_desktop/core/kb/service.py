"""KnowledgeService: what the UI, the CLI and the chat service call to manage and search knowledge bases.

Threading: every method may be called from any thread. All store and catalog access runs on ONE
owner thread (a single-worker executor), because an embedded Qdrant shard has exactly one owner.
Ingestion is a three-stage pipeline: a parser thread reads and chunks files ahead (bounded queue),
the calling thread embeds batches, and the owner thread writes them — one batch at a time, so a
search issued meanwhile waits at most for the batch being written, never for the whole ingestion.
Query embedding happens on the caller's thread, outside the owner thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bubble_desktop.core.errors import EmbeddingMismatchError, KnowledgeBaseError, ParseError, UserFacingError
from bubble_desktop.core.kb.catalog import INDEXED, Catalog
from bubble_desktop.core.kb.chunking import chunk_segments
from bubble_desktop.core.kb.embedder import Embedder, SentenceTransformerEmbedder, model_identity
from bubble_desktop.core.kb.parsers import detect_type, iter_files, parse_file
from bubble_desktop.core.kb.store import (
    EdgeStore,
    ServerStore,
    StoredPoint,
    VectorStore,
    point_id,
    recover_shard_folder,
    sparse_document,
    sparse_query,
    start_optimizer,
)
from bubble_desktop.core.kb.types import (
    Chunk,
    DocumentInfo,
    FailedFile,
    Hit,
    IngestProgress,
    IngestReport,
    KnowledgeBaseInfo,
)
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_CHUNKS = 64
# Above this many brute-force-searched points, build the HNSW index (p50 stays under ~10 ms below it).
OPTIMIZE_MIN_UNINDEXED = 20_000
# Points written to an Edge shard's appendable segment before it is rotated into an immutable,
# memory-mapped one (EdgeStore.rotate): bounds the ingestion's heap to ~1 KB x this.
ROTATE_POINTS = 25_000
QUEUE_FILES = 4
MAX_NAME = 100
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")


def doc_id_for(path: str | os.PathLike[str]) -> str:
    """Stable id of a source file: a hash of its absolute path."""
    return hashlib.sha1(os.path.abspath(os.fspath(path)).encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass(frozen=True)
class SearchStats:
    """Timings of the last search: embedding the query vs the store work (what benchmarks compare)."""

    embed_s: float
    store_s: float


@dataclass
class _Base:
    """An open knowledge base; touched only on the owner thread."""

    kb_id: str
    folder: Path
    catalog: Catalog
    store: VectorStore | None = None
    version: int = 0  # bumped on every store write; an optimized copy of an older version is dropped
    unrotated: int = 0  # points upserted since the store was opened or last rotated

    @property
    def name(self) -> str:
        return self.catalog.get("name") or self.kb_id

    @property
    def dim(self) -> int | None:
        d = self.catalog.get("dim")
        return int(d) if d else None


@dataclass
class _DocState:
    doc_id: str
    path: str
    content_hash: str
    total: int
    written: int = 0


@dataclass
class _IngestState:
    files_total: int
    bytes_total: int
    started: float = field(default_factory=time.monotonic)
    files_done: int = 0
    bytes_done: int = 0
    chunks_done: int = 0
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    current: str = ""


class KnowledgeService:
    """Create, fill, search and manage knowledge bases. Loads nothing heavy until used."""

    def __init__(self, paths: Paths, settings: KnowledgeSettings, embedder: Embedder | None = None) -> None:
        self._paths = paths
        self._settings = settings.model_copy()
        self._embedder: Embedder | None = embedder
        self._embedder_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bubble-kb-store")
        self._bases: dict[str, _Base] = {}  # kb_id -> open base (owner thread only)
        self._optimizers: dict[str, tuple[threading.Thread, list[Any]]] = {}
        self._optimizers_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self.batch_chunks = BATCH_CHUNKS  # chunks embedded and written per batch (cancel/search granularity)
        self.rotate_points = ROTATE_POINTS
        self.last_search_stats: SearchStats | None = None

    # ------------------------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return self._submit(fn, *args).result()

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed:
            raise KnowledgeBaseError("The knowledge service was closed.", "Restart Bubble.")
        return self._executor.submit(fn, *args)

    @property
    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder(
                    self._settings.embedding_model, self._settings.embed_threads
                )
            return self._embedder

    @property
    def settings(self) -> KnowledgeSettings:
        return self._settings

    def update_settings(self, settings: KnowledgeSettings) -> None:
        """New settings apply to the next call; a changed embedding model is loaded lazily."""
        old = self._settings
        self._settings = settings.model_copy()
        if (old.embedding_model, old.embed_threads) != (settings.embedding_model, settings.embed_threads):
            with self._embedder_lock:
                if isinstance(self._embedder, SentenceTransformerEmbedder) or self._embedder is None:
                    self._embedder = None

    def close(self) -> None:
        """Close every open shard (an unclosed embedded store stays locked) and stop the owner thread."""
        if self._closed:
            return
        self._closing = True
        with self._optimizers_lock:
            running = list(self._optimizers.values())
        for thread, procs in running:  # an unfinished index build is simply redone next time
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
            thread.join(30)
        try:
            self._executor.submit(self._close_all).result()
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)

    def _close_all(self) -> None:
        for base in list(self._bases.values()):
            self._close_base(base)
        self._bases.clear()

    def _close_base(self, base: _Base) -> None:
        if base.store is not None:
            try:
                base.store.close()
            except Exception:  # noqa: BLE001 - closing must go on for the other bases
                log.exception("closing store of %s failed", base.kb_id)
            base.store = None
        base.catalog.close()

    def __enter__(self) -> KnowledgeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- owner-thread helpers
    @property
    def _root(self) -> Path:
        return self._paths.knowledge_dir

    def _scan(self) -> dict[str, str]:
        """name -> kb_id for every knowledge base folder."""
        out: dict[str, str] = {}
        if not self._root.is_dir():
            return out
        for folder in sorted(self._root.iterdir()):
            if not (folder / "catalog.sqlite3").is_file():
                continue
            base = self._open_id(folder.name)
            out[base.name] = base.kb_id
        return out

    def _open_id(self, kb_id: str) -> _Base:
        base = self._bases.get(kb_id)
        if base is None:
            folder = self._root / kb_id
            base = _Base(kb_id, folder, Catalog(folder / "catalog.sqlite3"))
            self._bases[kb_id] = base
        return base

    def _base(self, name: str) -> _Base:
        kb_id = self._scan().get(name)
        if kb_id is None:
            raise KnowledgeBaseError(
                f"There is no knowledge base called '{name}'.",
                "Create it first (bubble-cli kb create NAME), or check the name with `kb list`.",
            )
        return self._bases[kb_id]

    def _drop_store(self, base: _Base) -> None:
        """Delete the base's vectors (the store and its files); the version bump makes an index
        build still running on a copy discard its result."""
        store = self._store(base)
        base.version += 1
        if store is not None:
            store.drop()
        base.store = None

    def _store(self, base: _Base, dim: int | None = None) -> VectorStore | None:
        """The base's store, opened on first use; created with ``dim`` when it doesn't exist yet."""
        if base.store is not None:
            return base.store
        known = base.dim
        if known is None:
            if dim is None:
                return None
            base.catalog.set(dim=str(dim))
            known = dim
        backend = base.catalog.get("backend") or "edge"
        if backend == "edge":
            if base.kb_id not in self._optimizers:
                recover_shard_folder(base.folder / "shard")
            base.store = EdgeStore(base.folder / "shard", known, create_in_child=True)
        else:
            base.store = ServerStore.connect(
                backend,
                self._settings.qdrant_api_key,
                base.catalog.get("collection") or f"bubble_{base.kb_id}",
                known,
            )
        return base.store

    def _info(self, base: _Base) -> KnowledgeBaseInfo:
        docs, chunks = base.catalog.totals()
        backend = base.catalog.get("backend") or "edge"
        return KnowledgeBaseInfo(
            name=base.name,
            documents=docs,
            chunks=chunks,
            embedding_model=base.catalog.get("embedding_model") or "",
            dim=base.dim,
            created=float(base.catalog.get("created") or 0.0),
            backend="edge" if backend == "edge" else "qdrant",
        )

    def _check_model(self, base: _Base) -> None:
        recorded = base.catalog.get("embedding_model") or ""
        current = model_identity(self._settings.embedding_model)
        if recorded and recorded != current and base.dim is not None:
            raise EmbeddingMismatchError(
                f"Knowledge base '{base.name}' was built with the embedding model '{recorded}', "
                f"but '{current}' is configured now.",
                f"Re-index it with the current model (bubble-cli kb reindex {base.name!r}), "
                "or switch the embedding model back in Settings → Knowledge.",
            )

    # ------------------------------------------------------------------------ management
    def list_bases(self) -> list[KnowledgeBaseInfo]:
        def run() -> list[KnowledgeBaseInfo]:
            return sorted(
                (self._info(self._bases[i]) for i in self._scan().values()), key=lambda b: b.name.lower()
            )

        return self._call(run)

    def create_base(self, name: str) -> KnowledgeBaseInfo:
        name = _check_name(name)

        def run() -> KnowledgeBaseInfo:
            if name in self._scan():
                raise KnowledgeBaseError(
                    f"A knowledge base called '{name}' already exists.", "Pick another name."
                )
            kb_id = uuid.uuid4().hex[:16]
            folder = self._root / kb_id
            folder.mkdir(parents=True, exist_ok=False)
            base = self._open_id(kb_id)
            url = self._settings.qdrant_url.strip()
            base.catalog.set(
                name=name,
                created=repr(time.time()),
                embedding_model=model_identity(self._settings.embedding_model),
                backend=url or "edge",
                collection=f"bubble_{kb_id}",
            )
            return self._info(base)

        return self._call(run)

    def rename_base(self, old: str, new: str) -> KnowledgeBaseInfo:
        new = _check_name(new)

        def run() -> KnowledgeBaseInfo:
            base = self._base(old)
            if new != old and new in self._scan():
                raise KnowledgeBaseError(
                    f"A knowledge base called '{new}' already exists.", "Pick another name."
                )
            base.catalog.set(name=new)
            return self._info(base)

        return self._call(run)

    def delete_base(self, name: str) -> None:
        def run() -> None:
            base = self._base(name)
            self._drop_store(base)
            base.catalog.close()
            del self._bases[base.kb_id]
            shutil.rmtree(base.folder, ignore_errors=True)

        self._call(run)

    def documents(self, name: str) -> list[DocumentInfo]:
        return self._call(lambda: self._base(name).catalog.documents())

    def info(self, name: str) -> KnowledgeBaseInfo:
        return self._call(lambda: self._info(self._base(name)))

    def remove_document(self, name: str, path: str | os.PathLike[str]) -> None:
        """Remove a document (or every document under a folder) from the knowledge base."""
        target = os.path.abspath(os.fspath(path))

        def run() -> None:
            base = self._base(name)
            docs = [
                d
                for d in base.catalog.documents()
                if d.path == target
                or d.path.startswith(target.rstrip(os.sep) + os.sep)
                or d.doc_id == os.fspath(path)
            ]
            if not docs:
                raise KnowledgeBaseError(
                    f"'{path}' is not in knowledge base '{name}'.",
                    "See its documents with `bubble-cli kb docs NAME`.",
                )
            store = self._store(base)
            base.version += 1
            for d in docs:
                if store is not None:
                    store.delete_document(d.doc_id)
            base.catalog.remove([d.doc_id for d in docs])

        self._call(run)

    def reindex(
        self,
        name: str,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Rebuild the index from the source files with the current embedding model."""

        def reset() -> list[str]:
            base = self._base(name)
            paths = [d.path for d in base.catalog.documents()]
            self._drop_store(base)
            base.catalog.clear()
            base.catalog.set(dim=None, embedding_model=model_identity(self._settings.embedding_model))
            return paths

        paths = self._call(reset)
        return self.add_paths(name, paths, progress, cancel)

    # ------------------------------------------------------------------------- ingestion
    def add_paths(
        self,
        name: str,
        paths: Sequence[Path | str],
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Index files and folders; unchanged files are skipped, changed ones replaced.

        Each bad file is reported with its reason and the rest carries on. With ``cancel`` set, the
        run stops between batches; documents left half-written are removed from the store again.
        """
        cancel = cancel or threading.Event()

        def prepare() -> tuple[_Base, dict[str, tuple[str | None, str]]]:
            base = self._base(name)
            if base.dim is not None:
                self._check_model(base)
            else:  # empty base: it takes the current model
                base.catalog.set(embedding_model=model_identity(self._settings.embedding_model))
            return base, base.catalog.states()

        base, known = self._call(prepare)
        files = list(iter_files(paths))
        sizes = []
        for f in files:
            try:
                sizes.append(f.stat().st_size)
            except OSError:
                sizes.append(0)
        state = _IngestState(files_total=len(files), bytes_total=sum(sizes))
        size_of = dict(zip(map(str, files), sizes, strict=True))
        settings = self._settings
        work: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=QUEUE_FILES)
        stop = threading.Event()

        def put(item: tuple[str, Any] | None) -> bool:
            while not stop.is_set():
                try:
                    work.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for f in files:
                    if stop.is_set():
                        break
                    key = str(f)
                    try:
                        doc = parse_file(f)
                        prev = known.get(key)
                        if prev and prev[1] == INDEXED and prev[0] == doc.content_hash:
                            item: tuple[str, Any] = ("unchanged", key)
                        else:
                            chunks = chunk_segments(doc.segments, settings.chunk_size, settings.chunk_overlap)
                            if not chunks:
                                raise ParseError("no text found in the file")
                            item = ("doc", (doc, chunks))
                    except UserFacingError as exc:
                        item = ("failed", (key, exc.message))
                    except MemoryError:
                        item = ("failed", (key, "not enough memory to read this file"))
                    except Exception as exc:  # noqa: BLE001 - one odd file must never stop the batch
                        log.exception("unexpected error parsing %s", key)
                        item = ("failed", (key, f"could not be read ({type(exc).__name__}: {exc})"))
                    if not put(item):
                        break
            finally:
                put(None)

        producer = threading.Thread(target=produce, name="bubble-kb-parse", daemon=True)
        producer.start()

        docs: dict[str, _DocState] = {}
        batch: list[tuple[_DocState, int, Chunk, str, str]] = []  # doc, index, chunk, path, type
        pending: Future[None] | None = None
        cancelled = False

        def report() -> None:
            if progress is None:
                return
            elapsed = max(time.monotonic() - state.started, 1e-6)
            rate = state.chunks_done / elapsed
            eta = None
            if state.bytes_done > 0:
                eta = max(0.0, (state.bytes_total - state.bytes_done) * elapsed / state.bytes_done)
            progress(
                IngestProgress(
                    state.files_done, state.files_total, state.chunks_done, state.current, rate, eta
                )
            )

        def file_done(path: str) -> None:
            state.files_done += 1
            state.bytes_done += size_of.get(path, 0)

        def write_batch() -> None:
            nonlocal pending, batch
            if not batch:
                return
            items, batch = batch, []
            texts = [c.text for _, _, c, _, _ in items]
            vectors = self.embedder.embed(texts)
            sparse = [sparse_document(t) for t in texts]
            points = [
                StoredPoint(
                    point_id(d.doc_id, i),
                    vectors[n],
                    sparse[n],
                    {
                        "doc_id": d.doc_id,
                        "path": path,
                        "type": type_,
                        "chunk": i,
                        "text": c.text,
                        "position": c.position,
                        "heading": c.heading,
                        "title": c.title,
                    },
                )
                for n, (d, i, c, path, type_) in enumerate(items)
            ]
            counts: dict[str, int] = {}
            for d, _, _, _, _ in items:
                counts[d.doc_id] = counts.get(d.doc_id, 0) + 1
            finished = []
            for d_id, n in counts.items():
                d = docs[d_id]
                d.written += n
                if d.written >= d.total:
                    finished.append(d)
            if pending is not None:
                pending.result()
            dim = int(vectors.shape[1])
            pending = self._submit(self._write, base, dim, points, finished)
            state.chunks_done += len(points)
            for d in finished:
                state.indexed.append(d.path)
                file_done(d.path)

        try:
            while True:
                item = work.get()
                if item is None:
                    break
                kind, payload = item
                if kind == "unchanged":
                    state.unchanged.append(payload)
                    file_done(payload)
                    report()
                elif kind == "failed":
                    path, reason = payload
                    state.failed.append(FailedFile(path, reason))
                    self._call(self._record_failure, base, path, reason, size_of.get(path, 0), path in known)
                    file_done(path)
                    report()
                else:
                    doc, chunks = payload
                    state.current = doc.path
                    d = _DocState(doc_id_for(doc.path), doc.path, doc.content_hash, len(chunks))
                    docs[d.doc_id] = d
                    self._call(self._begin_doc, base, doc.path, d.doc_id, doc.type, doc.size)
                    for i, c in enumerate(chunks):
                        batch.append((d, i, c, doc.path, doc.type))
                        if len(batch) >= self.batch_chunks:
                            if cancel.is_set():
                                raise _Cancelled
                            write_batch()
                            report()
                if cancel.is_set():
                    raise _Cancelled
            write_batch()
            if pending is not None:
                pending.result()
                pending = None
            report()
        except _Cancelled:
            cancelled = True
        finally:
            stop.set()
            while True:  # unblock and drain the parser thread
                try:
                    work.get_nowait()
                except queue.Empty:
                    if not producer.is_alive():
                        break
                    producer.join(0.05)
            if pending is not None:
                try:
                    pending.result()
                except Exception:  # noqa: BLE001 - the original error (if any) is what matters
                    log.exception("batch write failed during cleanup")
            unfinished = [d for d in docs.values() if d.written < d.total or d.path not in state.indexed]
            if unfinished and not self._closed:
                self._call(self._reset_docs, base, [d.doc_id for d in unfinished])
        if not cancelled:
            self._call(self._flush, base)
            self._call(self._start_optimizer, base, False)
        return IngestReport(
            indexed=tuple(state.indexed),
            unchanged=tuple(state.unchanged),
            failed=tuple(state.failed),
            cancelled=cancelled,
            chunks_added=state.chunks_done
            if not cancelled
            else sum(docs[doc_id_for(p)].total for p in state.indexed),
        )

    # owner-thread parts of ingestion
    def _begin_doc(self, base: _Base, path: str, doc_id: str, type_: str, size: int) -> None:
        store = self._store(base)
        if store is not None:
            store.delete_document(doc_id)  # a changed or half-written document: old chunks go
            base.version += 1
        base.catalog.begin(doc_id, path, type_, size)

    def _write(self, base: _Base, dim: int, points: list[StoredPoint], finished: list[_DocState]) -> None:
        store = self._store(base, dim)
        assert store is not None
        store.upsert(points)
        base.version += 1
        if isinstance(store, EdgeStore):
            base.unrotated += len(points)
            if base.unrotated >= self.rotate_points:
                store.rotate()
                base.unrotated = 0
        for d in finished:
            base.catalog.finish(d.doc_id, d.content_hash, d.total)

    def _record_failure(self, base: _Base, path: str, reason: str, size: int, was_known: bool) -> None:
        doc_id = doc_id_for(path)
        if was_known:
            store = self._store(base)
            if store is not None:
                store.delete_document(doc_id)
                base.version += 1
        if was_known or os.path.exists(path):
            base.catalog.fail(
                doc_id, path, detect_type(Path(path)) or Path(path).suffix.lstrip(".") or "file", size, reason
            )

    def _reset_docs(self, base: _Base, doc_ids: list[str]) -> None:
        store = self._store(base)
        base.version += 1
        for doc_id in doc_ids:
            if store is not None:
                store.delete_document(doc_id)
            base.catalog.reset(doc_id)

    def _flush(self, base: _Base) -> None:
        if base.store is not None:
            base.store.flush()

    def optimize(self, name: str, wait: bool = True) -> None:
        """Build the HNSW index now (ingestion starts this by itself above OPTIMIZE_MIN_UNINDEXED points).

        The build runs in a child process on a copy of the shard, because ``EdgeShard.optimize()``
        holds the GIL for its whole run; searches go on meanwhile and the copy is swapped in after.
        """
        base = self._call(lambda: self._base(name))
        thread = self._call(self._start_optimizer, base, True)
        if thread is None:
            self._call(lambda: base.store.optimize() if base.store is not None else None)
        elif wait:
            thread.join()

    def index_builds_running(self) -> bool:
        with self._optimizers_lock:
            return bool(self._optimizers)

    def wait_for_index_builds(self, timeout: float | None = None) -> bool:
        """Wait for running index builds (the CLI does, before it exits); True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._optimizers_lock:
                threads = [t for t, _ in self._optimizers.values()]
            if not threads:
                return True
            for t in threads:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return not self.index_builds_running()

    def _start_optimizer(self, base: _Base, force: bool) -> threading.Thread | None:
        store = base.store
        if not isinstance(store, EdgeStore) or self._closing:
            return None
        with self._optimizers_lock:
            running = self._optimizers.get(base.kb_id)
        if running is not None:
            return running[0]
        if not force and store.unindexed() < OPTIMIZE_MIN_UNINDEXED:
            return None
        copy = base.folder / "shard.optimizing"
        store.flush()
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base.folder / "shard", copy)
        procs: list[Any] = []
        thread = threading.Thread(
            target=self._run_optimizer,
            args=(base, base.name, copy, base.version, procs, base.dim),
            name="bubble-kb-optimize",
        )
        with self._optimizers_lock:
            self._optimizers[base.kb_id] = (thread, procs)
        thread.start()
        return thread

    def _run_optimizer(
        self, base: _Base, label: str, copy: Path, version: int, procs: list[Any], dim: int
    ) -> None:
        """Optimizer thread: wait for the child (the GIL stays free), then hand the swap to the owner."""
        try:
            started = time.monotonic()
            if not self._closing:
                proc = start_optimizer(copy, dim)
                procs.append(proc)
                proc.join()
                if proc.exitcode != 0 and not self._closing:
                    log.warning("index build for %s failed (exit code %s)", label, proc.exitcode)
                elif not self._closing:
                    self._call(self._swap_optimized, base, copy, version)
                    log.info("index of %s built in %.1f s", label, time.monotonic() - started)
        except Exception:  # noqa: BLE001 - a failed build only leaves search slower
            log.exception("index build for %s failed", label)
        finally:
            with self._optimizers_lock:
                self._optimizers.pop(base.kb_id, None)
            if copy.exists():
                shutil.rmtree(copy, ignore_errors=True)

    def _swap_optimized(self, base: _Base, copy: Path, version: int) -> None:
        """Owner thread: replace the shard with its optimized copy unless it was written meanwhile."""
        if (
            base.version != version
            or base.store is None
            or not copy.exists()
            or base.kb_id not in {b.kb_id for b in self._bases.values()}
        ):
            return
        shard = base.folder / "shard"
        old = base.folder / "shard.old"
        dim = base.dim
        assert dim is not None
        base.store.close()
        base.store = None
        shard.rename(old)
        copy.rename(shard)
        base.store = EdgeStore(shard, dim)
        shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------- retrieval
    def search(
        self,
        names: str | Sequence[str],
        query: str,
        top_k: int | None = None,
        score_threshold: float | None = None,
        hybrid: bool | None = None,
        doc_filter: Sequence[str] | None = None,
        query_vector: Sequence[float] | None = None,
    ) -> list[Hit]:
        """The best chunks for ``query`` across ``names``, best first.

        Dense only: scores are cosine similarities and ``score_threshold`` applies to them. Hybrid
        (default): dense candidates (threshold applied) and BM25 candidates are fused by RRF and the
        score is the RRF score. ``doc_filter`` takes document paths or ids.
        """
        settings = self._settings
        top_k = top_k or settings.top_k
        threshold = settings.score_threshold if score_threshold is None else score_threshold
        hybrid = settings.hybrid if hybrid is None else hybrid
        kb_names = [names] if isinstance(names, str) else list(names)
        if not kb_names or not query.strip():
            return []

        def check() -> list[str]:
            out = []
            for n in kb_names:
                base = self._base(n)
                if base.dim is None:
                    continue  # nothing indexed yet
                self._check_model(base)
                out.append(n)
            return out

        usable = self._call(check)
        if not usable:
            self.last_search_stats = SearchStats(0.0, 0.0)
            return []
        t0 = time.perf_counter()
        dense = list(query_vector) if query_vector is not None else self.embedder.embed([query])[0]
        sparse = sparse_query(query) if hybrid else None
        dense_weight = 1.0
        if hybrid and query_vector is None:
            coverage = getattr(self.embedder, "coverage", None)
            if coverage is not None:
                dense_weight = max(0.01, min(1.0, float(coverage(query)) ** 2))
        t1 = time.perf_counter()
        doc_ids = None
        if doc_filter:
            doc_ids = sorted({doc_id_for(p) for p in doc_filter} | set(doc_filter))

        def run() -> list[Hit]:
            hits: list[Hit] = []
            for n in usable:
                base = self._base(n)
                store = self._store(base)
                if store is None:
                    continue
                for h in store.search(dense, sparse, top_k, threshold or None, doc_ids, dense_weight):
                    p = h.payload
                    hits.append(
                        Hit(
                            score=h.score,
                            path=str(p.get("path", "")),
                            text=str(p.get("text", "")),
                            position=str(p.get("position", "")),
                            kb=n,
                            doc_id=str(p.get("doc_id", "")),
                            title=p.get("title"),
                            heading=p.get("heading"),
                        )
                    )
            hits.sort(key=lambda h: h.score, reverse=True)
            return hits[:top_k]

        hits = self._call(run)
        self.last_search_stats = SearchStats(t1 - t0, time.perf_counter() - t1)
        return hits


class _Cancelled(Exception):
    pass


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or _BAD_NAME.search(name):
        raise KnowledgeBaseError(
            f"'{name}' is not a usable knowledge base name.",
            f"Use 1 to {MAX_NAME} characters, without control characters.",
        )
    return name


__all__ = ["KnowledgeService", "SearchStats", "doc_id_for"]
