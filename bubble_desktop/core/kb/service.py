"""KnowledgeService: what the UI, the CLI and the chat service call to manage and search knowledge bases.

Threading: every method may be called from any thread. All store and catalog access runs on ONE
owner thread (a single-worker executor), because an embedded Qdrant shard has exactly one owner.
Ingestion is a three-stage pipeline: a parser thread reads and chunks files ahead (bounded queue),
the calling thread embeds batches, and the owner thread writes them — one batch at a time, so a
search issued meanwhile waits at most for the batch being written, never for the whole ingestion.
Query embedding happens on the caller's thread, outside the owner thread.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bubble_desktop.core.errors import (
    BackendMismatchError,
    EmbeddingMismatchError,
    KnowledgeBaseError,
    StoreLockedError,
)
from bubble_desktop.core.kb.catalog import INDEXED, Catalog, doc_id_for
from bubble_desktop.core.kb.embedder import (
    DEFAULT_MODEL_NAME,
    Embedder,
    SentenceTransformerEmbedder,
    model_identity,
)
from bubble_desktop.core.kb.ingest import DocState, Ingestion
from bubble_desktop.core.kb.milvus_store import LITE_DIR, MilvusStore, guess_analyzer
from bubble_desktop.core.kb.parsers import detect_type
from bubble_desktop.core.kb.relevance import cosine, keyword_share, query_terms, relevance
from bubble_desktop.core.kb.store import (
    EdgeStore,
    ServerStore,
    StoredHit,
    StoredPoint,
    VectorStore,
    recover_shard_folder,
    sparse_query,
    start_optimizer,
)
from bubble_desktop.core.kb.types import (
    DocumentInfo,
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
REINDEX_DIR = "reindex"  # beside the shard: the index a re-index builds until it is swapped in
MAX_NAME = 100
BACKENDS = ("edge", "qdrant", "milvus-lite", "milvus")
BACKEND_NAMES = {
    "edge": "Qdrant Edge",
    "qdrant": "Qdrant server",
    "milvus-lite": "Milvus Lite",
    "milvus": "Milvus server",
}
LOCAL_DIRS = {"edge": "shard", "milvus-lite": LITE_DIR}  # backends whose store is a folder in the base
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")


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
    recovered: bool = False  # _recover ran (once per process)

    @property
    def name(self) -> str:
        return self.catalog.get("name") or self.kb_id

    @property
    def dim(self) -> int | None:
        d = self.catalog.get("dim")
        return int(d) if d else None


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
        self._reindexing: set[str] = set()  # kb_ids with a re-index running (search uses their old model)
        self._old_embedders: dict[str, Embedder] = {}
        self._warming: threading.Thread | None = None

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

    def warm_up(self) -> bool:
        """Load the embedding model in the background; True when a load started.

        For when a chat has just chosen a knowledge base: its first question otherwise waited for
        torch, transformers, sentence-transformers and the model before retrieval (first search
        4.8 s, 0.21 s warmed: tests/bench/kb_warm_up.py). Only then, not at start-up: a chat without
        knowledge never loads torch. A failure is left to the question, which reports it as usual."""
        embedder = self.embedder
        if self._closing or getattr(embedder, "loaded", True):
            return False
        with self._embedder_lock:
            if self._warming is not None and self._warming.is_alive():
                return False

            def run() -> None:
                try:
                    embedder.dim  # noqa: B018 - loads the model
                except Exception as exc:  # noqa: BLE001 - the question reports it, with its hint
                    log.info("warming the embedding model failed: %s", exc)

            self._warming = threading.Thread(target=run, name="bubble-embedder-warm-up", daemon=True)
            self._warming.start()
        return True

    def _old_embedder(self, identity: str) -> Embedder:
        """The embedder of a base being re-indexed for another model (dropped when the re-index ends)."""
        with self._embedder_lock:
            embedder = self._old_embedders.get(identity)
            if embedder is None:
                setting = "" if identity == DEFAULT_MODEL_NAME else identity
                embedder = SentenceTransformerEmbedder(setting, self._settings.embed_threads)
                self._old_embedders[identity] = embedder
            return embedder

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
        base = self._bases[kb_id]
        self._recover(base)
        return base

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
        kind, location = _recorded(base)
        if kind == "edge":
            if base.kb_id not in self._optimizers:
                recover_shard_folder(base.folder / "shard")
            base.store = EdgeStore(base.folder / "shard", known, create_in_child=True)
        elif kind == "milvus-lite":
            base.store = MilvusStore.open_lite(
                base.folder / LITE_DIR, known, base.catalog.get("analyzer") or ""
            )
        elif kind == "milvus":
            base.store = MilvusStore.connect(
                location,
                self._settings.milvus_token,
                base.catalog.get("collection") or f"bubble_{base.kb_id}",
                known,
                base.catalog.get("analyzer") or "",
            )
        else:
            base.store = ServerStore.connect(
                location,
                self._settings.qdrant_api_key,
                base.catalog.get("collection") or f"bubble_{base.kb_id}",
                known,
            )
        if isinstance(base.store, MilvusStore):
            base.catalog.set(analyzer=base.store.analyzer, notice=base.store.notice or None)
        return base.store

    def _configured(self) -> tuple[str, str]:
        """(kind, location) of the backend the settings choose for new knowledge bases."""
        s = self._settings
        kind = s.vector_store
        if kind == "qdrant":
            return kind, s.qdrant_url.strip()
        if kind == "milvus":
            return kind, s.milvus_url.strip()
        return kind, ""

    def _check_backend(self, base: _Base) -> None:
        """Refuse a base whose server is not the one the settings point at.

        Each base is opened in the backend it was created in (its catalog says which), whatever
        backend new bases get now. But the token or API key in the settings belongs to the server
        URL in the settings: a base recorded on another server of the same kind is refused rather
        than sent that token (or left to time out on a server that moved).
        """
        kind, location = _recorded(base)
        configured = {"qdrant": self._settings.qdrant_url, "milvus": self._settings.milvus_url}.get(kind, "")
        configured = configured.strip()
        if not configured or configured == location:
            return
        raise BackendMismatchError(
            f"Knowledge base '{base.name}' is stored on the {BACKEND_NAMES[kind]} at {location}, but "
            f"Settings → Knowledge points at {configured}.",
            f"Set the {BACKEND_NAMES[kind]} URL back to {location} to use it, or create a new knowledge "
            "base on the new server and add the documents to it.",
        )

    def _info(self, base: _Base) -> KnowledgeBaseInfo:
        docs, chunks = base.catalog.totals()
        return KnowledgeBaseInfo(
            name=base.name,
            documents=docs,
            chunks=chunks,
            embedding_model=base.catalog.get("embedding_model") or "",
            dim=base.dim,
            created=float(base.catalog.get("created") or 0.0),
            backend=_recorded(base)[0],
            location=_recorded(base)[1],
            notice=base.catalog.get("notice") or "",
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

    def create_base(self, name: str, backend: str | None = None, exist_ok: bool = False) -> KnowledgeBaseInfo:
        """A new, empty base in ``backend`` (one of BACKENDS; default: the configured one; a server
        backend uses the configured URL). With ``exist_ok`` an existing base of that name is returned
        as it is: the check and the creation are one step on the store's thread, so two callers that
        both want the base (the knowledge tab's "New" and a drop of files right after) cannot race."""
        name = _check_name(name)
        if backend is not None and backend not in BACKENDS:
            raise KnowledgeBaseError(
                f"'{backend}' is not a vector database Bubble knows.", f"Use one of: {', '.join(BACKENDS)}."
            )

        def run() -> KnowledgeBaseInfo:
            existing = self._scan()
            if name in existing and exist_ok:
                return self._info(self._bases[existing[name]])
            if name in existing:
                raise KnowledgeBaseError(
                    f"A knowledge base called '{name}' already exists.", "Pick another name."
                )
            kb_id = uuid.uuid4().hex[:16]
            folder = self._root / kb_id
            folder.mkdir(parents=True, exist_ok=False)
            base = self._open_id(kb_id)
            kind, location = self._configured()
            if backend is not None and backend != kind:
                kind = backend
                location = {"qdrant": self._settings.qdrant_url, "milvus": self._settings.milvus_url}.get(
                    kind, ""
                ).strip()
            if kind in ("qdrant", "milvus") and not location:
                base.catalog.close()
                del self._bases[kb_id]
                shutil.rmtree(folder, ignore_errors=True)
                raise KnowledgeBaseError(
                    f"There is no {BACKEND_NAMES[kind]} URL in the settings.",
                    "Set it first in Settings → Data.",
                )
            base.catalog.set(
                name=name,
                created=repr(time.time()),
                embedding_model=model_identity(self._settings.embedding_model),
                backend=location if kind == "qdrant" else kind,
                backend_url=location if kind == "milvus" else None,
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
            self._close_staging(base)
            base.catalog.close()
            del self._bases[base.kb_id]
            shutil.rmtree(base.folder, ignore_errors=True)

        self._call(run)

    def documents(self, name: str) -> list[DocumentInfo]:
        """The base's documents; during a re-index, still those of the index that answers searches."""
        return self._call(lambda: self._base(name).catalog.documents())

    def info(self, name: str) -> KnowledgeBaseInfo:
        return self._call(lambda: self._info(self._base(name)))

    def remove_document(self, name: str, path: str | os.PathLike[str]) -> None:
        """Remove a document (or every document under a folder) from the knowledge base."""
        self.remove_documents(name, [path])

    def remove_documents(self, name: str, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Remove documents (or every document under folders) in one step that a kill cannot split:
        the rows are marked first, then their points go, then the rows; a run killed in between is
        finished when the base is next opened."""

        def run() -> None:
            base = self._base(name)
            docs = base.catalog.documents()
            chosen: dict[str, DocumentInfo] = {}
            for path in paths:
                target = os.path.abspath(os.fspath(path))
                found = [
                    d
                    for d in docs
                    if d.path == target
                    or d.path.startswith(target.rstrip(os.sep) + os.sep)
                    or d.doc_id == os.fspath(path)
                ]
                if not found:
                    raise KnowledgeBaseError(
                        f"'{path}' is not in knowledge base '{name}'.",
                        "See its documents with `bubble-cli kb docs NAME`.",
                    )
                chosen.update((d.doc_id, d) for d in found)
            ids = list(chosen)
            base.catalog.mark_removing(ids)
            self._finish_removal(base, ids)

        self._call(run)

    def _finish_removal(self, base: _Base, doc_ids: list[str]) -> None:
        store = self._store(base)
        base.version += 1
        if store is not None:
            for doc_id in doc_ids:
                store.delete_document(doc_id)
        base.catalog.remove(doc_ids)

    def reindex(
        self,
        name: str,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> IngestReport:
        """Rebuild the index from the source files with the current embedding model.

        The new index is built beside the old one (``<base>/reindex``: its own catalog and shard) and
        swapped in only when it is complete. Until then search answers from the old index (with the
        old embedding model, if the model was switched). Cancelled or killed, the old index stays as it
        was, and the next re-index resumes the half-built one. A document that cannot be read again
        (moved, unreadable) keeps its old chunks when the model is unchanged.
        """

        def prepare() -> tuple[_Base, _Base, list[str]]:
            base = self._base(name)
            staging = self._open_staging(base)
            self._reindexing.add(base.kb_id)
            return base, staging, [d.path for d in base.catalog.documents()]

        base, staging, paths = self._call(prepare)
        try:
            report = self._ingest(staging, paths, progress, cancel, optimize=False)
            if not report.cancelled and not self._closed:
                self._call(self._finish_reindex, base, staging, report)
        finally:
            self._reindexing.discard(base.kb_id)
            with self._embedder_lock:
                self._old_embedders.clear()
            if not self._closed:
                self._call(self._close_staging, base)
        return report

    def _staging_folder(self, base: _Base) -> Path:
        return base.folder / REINDEX_DIR

    @staticmethod
    def _staging_key(base: _Base) -> str:
        """The key of a base's re-index in ``_bases`` (never a folder name under the root)."""
        return f"{base.kb_id}.{REINDEX_DIR}"

    def _open_staging(self, base: _Base) -> _Base:
        """Owner thread: the half-built index of a re-index (resumed), or a new one."""
        folder = self._staging_folder(base)
        identity = model_identity(self._settings.embedding_model)
        key = self._staging_key(base)
        staging = self._bases.get(key)
        if staging is None and (folder / "catalog.sqlite3").is_file():
            staging = _Base(key, folder, Catalog(folder / "catalog.sqlite3"))
            if staging.catalog.get("embedding_model") != identity or staging.catalog.get("complete"):
                self._close_base(staging)  # built for another model: start over
                shutil.rmtree(folder, ignore_errors=True)
                staging = None
            else:
                self._bases[key] = staging
                self._recover(staging)
        if staging is None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            staging = _Base(key, folder, Catalog(folder / "catalog.sqlite3"))
            token = uuid.uuid4().hex[:12]
            staging.catalog.set(
                name=base.name,
                created=repr(time.time()),
                embedding_model=identity,
                backend=base.catalog.get("backend") or "edge",
                backend_url=base.catalog.get("backend_url"),
                analyzer=base.catalog.get("analyzer"),
                collection=f"bubble_{base.kb_id}_{token}",
                token=token,
            )
            self._bases[key] = staging
        return staging

    def _close_staging(self, base: _Base) -> None:
        staging = self._bases.pop(self._staging_key(base), None)
        if staging is not None:
            self._close_base(staging)

    def _finish_reindex(self, base: _Base, staging: _Base, report: IngestReport) -> None:
        """Owner thread: carry over what could not be re-read, mark the new index complete, swap."""
        reasons = {f.path: f.reason for f in report.failed}
        done = staging.catalog.states()
        same_model = (base.catalog.get("embedding_model") or "") == (
            staging.catalog.get("embedding_model") or ""
        )
        old_store = self._store(base)
        for row in base.catalog.rows():
            doc_id, path, type_, _hash, _chunks, size, _added, status, _error = row
            if done.get(str(path), (None, ""))[1] == INDEXED:
                continue
            if status == INDEXED and same_model and old_store is not None:
                points = old_store.export_document(str(doc_id))
                if points:
                    new_store = self._store(staging, len(points[0].dense))
                    assert new_store is not None
                    new_store.upsert(points)
                staging.catalog.put_rows([row])
                log.warning(
                    "re-index kept the old chunks of %s (%s)", path, reasons.get(str(path), "not re-read")
                )
            else:
                reason = reasons.get(str(path)) or "the file could not be read again"
                staging.catalog.fail(str(doc_id), str(path), str(type_), int(str(size)), reason)
        if staging.store is not None:
            staging.store.flush()
        staging.catalog.set(complete="1", has_shard="1" if staging.dim is not None else "0")
        self._bases.pop(staging.kb_id, None)
        self._close_base(staging)
        self._apply_swap(base)
        self._store(base)
        self._start_optimizer(base, False)

    def _apply_swap(self, base: _Base) -> None:
        """Owner thread: make a complete re-index the base's index. Idempotent: a run killed at any
        step is finished by running this again (from :meth:`_recover`)."""
        folder = self._staging_folder(base)
        staged = Catalog(folder / "catalog.sqlite3")
        try:
            token = staged.get("token") or ""
            if base.store is not None:
                base.store.close()
                base.store = None
            base.version += 1  # an index build of the old shard still running is discarded
            kind, location = _recorded(base)
            local = LOCAL_DIRS.get(kind)  # a store in a folder of the base (else on a server)
            old_collection = base.catalog.get("collection") or f"bubble_{base.kb_id}"
            if base.catalog.get("reindex_applied") != token:
                if local is not None:
                    shard, old, new = base.folder / local, base.folder / f"{local}.old", folder / local
                    if new.exists() or staged.get("has_shard") != "1":
                        if shard.exists():
                            shutil.rmtree(old, ignore_errors=True)
                            shard.rename(old)
                        if new.exists():
                            new.rename(shard)
                old_dim = base.dim
                base.catalog.replace_all(
                    staged.rows(),
                    dim=staged.get("dim"),
                    embedding_model=staged.get("embedding_model"),
                    collection=staged.get("collection") if local is None else old_collection,
                    analyzer=staged.get("analyzer"),
                    notice=staged.get("notice"),
                    reindex_applied=token,
                )
                if local is None and old_dim is not None:
                    try:  # the old collection on the server; best effort
                        if kind == "milvus":
                            MilvusStore.connect(
                                location, self._settings.milvus_token, old_collection, old_dim
                            ).drop()
                        else:
                            ServerStore.connect(
                                location, self._settings.qdrant_api_key, old_collection, old_dim
                            ).drop()
                    except Exception:  # noqa: BLE001 - an orphaned collection is only wasted space
                        log.warning("could not drop the old collection %s", old_collection, exc_info=True)
        finally:
            staged.close()
        for local in LOCAL_DIRS.values():
            shutil.rmtree(base.folder / f"{local}.old", ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)

    def _recover(self, base: _Base) -> None:
        """Owner thread, once per base and process: repair what a killed run left behind.

        Half-written document versions are removed (an older complete version stays), removals are
        finished, and a complete re-index that was not yet swapped in is swapped in. Skipped while
        another process holds the store (its run is not over).
        """
        if base.recovered:
            return
        staged = self._staging_folder(base) / "catalog.sqlite3"
        complete = False
        if staged.is_file():  # (a re-index's own base has no re-index folder of its own)
            cat = Catalog(staged)
            complete = bool(cat.get("complete"))
            cat.close()
        writing, removing = base.catalog.writing(), base.catalog.removing()
        if not (writing or removing or complete):
            base.recovered = True
            return
        try:
            store = self._store(base)
        except StoreLockedError:
            return
        for doc_id, content_hash in writing:
            state = base.catalog.status_hash(doc_id)
            if state is not None and state == (INDEXED, content_hash):  # complete; the old version may linger
                if store is not None:
                    store.delete_document(doc_id, keep_hash=content_hash)
            else:
                if store is not None:
                    store.delete_document(doc_id, only_hash=content_hash)
                if state is not None and state[0] != INDEXED:
                    base.catalog.remove([doc_id])
            base.catalog.end_writing(doc_id)
        if removing:
            self._finish_removal(base, removing)
        if complete:
            self._apply_swap(base)
        base.version += 1
        base.recovered = True
        log.info("repaired knowledge base %s after an interrupted run", base.name)

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
        run stops between batches; what it had not finished is undone, and a changed document that
        was not finished keeps its previous version. See core/kb/ingest.py for the pipeline.
        """
        return self._ingest(self._call(self._base, name), paths, progress, cancel)

    def _ingest(
        self,
        base: _Base,
        paths: Sequence[Path | str],
        progress: Callable[[IngestProgress], None] | None,
        cancel: threading.Event | None,
        optimize: bool = True,
    ) -> IngestReport:
        def prepare() -> None:
            self._check_backend(base)
            if base.dim is not None:
                self._check_model(base)
            else:  # empty base: it takes the current model
                base.catalog.set(embedding_model=model_identity(self._settings.embedding_model))

        self._call(prepare)
        report = Ingestion(
            _BaseTarget(self, base),
            lambda: self.embedder,
            self._settings,
            paths,
            self.batch_chunks,
            progress,
            cancel,
            closed=lambda: self._closed,
        ).run()
        if not report.cancelled:
            self._call(self._flush, base)
            if optimize:
                self._call(self._start_optimizer, base, False)
        return report

    # owner-thread parts of ingestion (called through _BaseTarget)
    def _begin_doc(self, base: _Base, doc: DocState, type_: str, size: int) -> None:
        base.catalog.start_writing(doc.doc_id, doc.content_hash)
        state = base.catalog.status_hash(doc.doc_id)
        if state is None or state[0] != INDEXED:  # new (or failed before): listed as pending meanwhile
            base.catalog.begin(doc.doc_id, doc.path, type_, size)
        # an indexed document keeps its row and old chunks until the new version is complete

    def _write(self, base: _Base, dim: int, points: list[StoredPoint], finished: list[DocState]) -> None:
        if base.store is None and base.catalog.get("analyzer") is None and _recorded(base)[0] != "edge":
            # a new Milvus collection's BM25 analyzer is chosen by the language of its first chunks
            base.catalog.set(analyzer=guess_analyzer([str(p.payload.get("text", "")) for p in points]))
        store = self._store(base, dim)
        assert store is not None
        store.upsert(points)
        base.version += 1
        if isinstance(store, EdgeStore):
            base.unrotated += len(points)
            if base.unrotated >= self.rotate_points:
                store.rotate()
                base.unrotated = 0
        for d in finished:  # order matters for _recover: the row first, then the old version goes
            base.catalog.finish(d.doc_id, d.content_hash, d.total)
            store.delete_document(d.doc_id, keep_hash=d.content_hash)
            base.catalog.end_writing(d.doc_id)

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

    def _abandon(self, base: _Base, docs: list[DocState]) -> None:
        store = self._store(base)
        base.version += 1
        for d in docs:
            if store is not None:
                store.delete_document(d.doc_id, only_hash=d.content_hash)
            state = base.catalog.status_hash(d.doc_id)
            if state is not None and state[0] != INDEXED:
                base.catalog.remove([d.doc_id])  # never indexed: as if it had not been added
            base.catalog.end_writing(d.doc_id)

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
        min_relevance: float | None = None,
    ) -> list[Hit]:
        """The best chunks for ``query`` across ``names``, best first.

        Dense only: scores are cosine similarities and ``score_threshold`` applies to them. Hybrid
        (default): dense candidates (threshold applied) and BM25 candidates are fused by RRF and the
        score is the RRF score. ``doc_filter`` takes document paths or ids. Chunks whose relevance
        (core/kb/relevance.py) is below ``min_relevance`` (default: the setting) are left out, so
        a question the knowledge base cannot answer gets no chunks.
        """
        settings = self._settings
        top_k = top_k or settings.top_k
        threshold = settings.score_threshold if score_threshold is None else score_threshold
        floor = settings.min_relevance if min_relevance is None else min_relevance
        hybrid = settings.hybrid if hybrid is None else hybrid
        kb_names = [names] if isinstance(names, str) else list(names)
        if not kb_names or not query.strip():
            return []

        def check() -> list[tuple[str, str]]:
            """(name, identity of the model its vectors were made with) of each searchable base."""
            out = []
            for n in kb_names:
                base = self._base(n)
                if base.dim is None:
                    continue  # nothing indexed yet
                recorded = base.catalog.get("embedding_model") or ""
                if base.kb_id in self._reindexing and recorded != model_identity(settings.embedding_model):
                    out.append((n, recorded))  # being re-indexed for a new model: the old one answers
                    continue
                self._check_backend(base)
                self._check_model(base)
                out.append((n, ""))
            return out

        usable = self._call(check)
        if not usable:
            self.last_search_stats = SearchStats(0.0, 0.0)
            return []
        t0 = time.perf_counter()
        query_sparse = sparse_query(query)
        sparse = query_sparse if hybrid else None
        keywords = query_terms(query_sparse[0])
        queries: dict[str, tuple[list[float], float]] = {}  # model identity ("" = current) -> vector, weight
        coverage_of: dict[str, Callable[[str], float] | None] = {}
        for identity in dict.fromkeys(i for _, i in usable):
            embedder = self.embedder if not identity else self._old_embedder(identity)
            coverage_of[identity] = getattr(embedder, "coverage", None)
            if query_vector is not None and not identity:
                dense = [float(x) for x in query_vector]
            else:
                dense = [float(x) for x in embedder.embed([query])[0]]
            dense_weight = 1.0
            if query_vector is None or identity:
                coverage = getattr(embedder, "coverage", None)
                if coverage is not None:
                    dense_weight = max(0.01, min(1.0, float(coverage(query)) ** 2))
            queries[identity] = (dense, dense_weight)
        t1 = time.perf_counter()
        doc_ids = None
        if doc_filter:
            doc_ids = sorted({doc_id_for(p) for p in doc_filter} | set(doc_filter))

        def run() -> list[tuple[str, str, StoredHit]]:
            found: list[tuple[str, str, StoredHit]] = []
            for n, identity in usable:
                base = self._base(n)
                store = self._store(base)
                if store is None:
                    continue
                dense, dense_weight = queries[identity]
                fuse_weight = dense_weight if hybrid else 1.0
                found.extend(
                    (n, identity, h)
                    for h in store.search(
                        dense, sparse, top_k, threshold or None, doc_ids, fuse_weight, text=query
                    )
                )
            return found

        found = self._call(run)
        # judged here, not on the owner thread: a chunk's coverage takes the embedder's lock, which an
        # ingestion's batch may hold for a while
        hits: list[Hit] = []
        for n, identity, h in found:
            p = h.payload
            dense, dense_weight = queries[identity]
            similarity = cosine(dense, h.dense)
            keyword = keyword_share(keywords, h.terms) if h.terms else None
            weight = dense_weight
            chunk_coverage = coverage_of[identity]
            if chunk_coverage is not None and similarity is not None:
                # a chunk the model cannot read (Chinese under MiniLM) gets a vector close to every
                # other such chunk: its similarity says little either
                weight = min(weight, chunk_coverage(str(p.get("text", ""))) ** 2)
            score = relevance(similarity, keyword, weight)
            if score < floor:
                continue
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
                    page=p.get("page") if isinstance(p.get("page"), int) else None,
                    similarity=similarity,
                    keyword=keyword,
                    relevance=score,
                )
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        self.last_search_stats = SearchStats(t1 - t0, time.perf_counter() - t1)
        return hits[:top_k]


def _recorded(base: _Base) -> tuple[str, str]:
    """(kind, location) of the backend a base was created in: what its catalog says."""
    backend = base.catalog.get("backend") or "edge"
    if backend in ("edge", "milvus-lite"):
        return backend, ""
    if backend == "milvus":
        return backend, base.catalog.get("backend_url") or ""
    return "qdrant", backend  # a Qdrant URL (or qdrant-client's local folder)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or _BAD_NAME.search(name):
        raise KnowledgeBaseError(
            f"'{name}' is not a usable knowledge base name.",
            f"Use 1 to {MAX_NAME} characters, without control characters.",
        )
    return name


class _BaseTarget:
    """The owner-thread side of one ingestion into one base (see ingest.IngestTarget)."""

    def __init__(self, service: KnowledgeService, base: _Base) -> None:
        self._service = service
        self._base = base

    def known(self) -> dict[str, tuple[str | None, str]]:
        return self._service._call(self._base.catalog.states)

    def begin(self, doc: DocState, type_: str, size: int) -> None:
        self._service._call(self._service._begin_doc, self._base, doc, type_, size)

    def write(self, dim: int, points: list[StoredPoint], finished: list[DocState]) -> Future[None]:
        return self._service._submit(self._service._write, self._base, dim, points, finished)

    def failed(self, path: str, reason: str, size: int, was_known: bool) -> None:
        self._service._call(self._service._record_failure, self._base, path, reason, size, was_known)

    def abandon(self, docs: list[DocState]) -> None:
        self._service._call(self._service._abandon, self._base, docs)


__all__ = ["KnowledgeService", "SearchStats", "doc_id_for"]
