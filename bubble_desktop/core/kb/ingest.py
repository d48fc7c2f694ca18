"""One ingestion run as a pipeline of three named stages: parse → embed → write.

- **parse** (a thread of its own): reads, detects, chunks and hashes files ahead of the embedder,
  through a bounded queue, so parsing overlaps embedding.
- **embed** (the calling thread): turns batches of chunks into dense + sparse vectors.
- **write** (the store's owner thread, through :class:`IngestTarget`): upserts one batch while the
  next one is embedded; a search issued meanwhile waits at most for one batch write.

Cancel and resume rules, the whole of them:
- ``cancel`` is checked between batches. A cancelled run abandons the documents it had not
  finished: their new chunks are removed, and a document that was indexed before keeps its old
  version, untouched (new chunks are written under new point ids; the old ones go only once the
  new version is complete).
- A run killed at any moment is repaired when the base is next opened (see the service's
  ``_recover``); documents finished before the kill are skipped by the next run (same hash).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bubble_desktop.core.errors import ParseError, UserFacingError
from bubble_desktop.core.i18n import N_
from bubble_desktop.core.kb.catalog import INDEXED, doc_id_for
from bubble_desktop.core.kb.chunking import chunk_segments
from bubble_desktop.core.kb.embedder import Embedder
from bubble_desktop.core.kb.parsers import ParseCancelled, ParseOptions, iter_files, parse_file
from bubble_desktop.core.kb.store import StoredPoint, point_id, sparse_document
from bubble_desktop.core.kb.types import Chunk, FailedFile, IngestProgress, IngestReport
from bubble_desktop.core.settings import KnowledgeSettings

log = logging.getLogger(__name__)

QUEUE_FILES = 4  # parsed files waiting for the embedder


@dataclass
class DocState:
    """A document being written in this run."""

    doc_id: str
    path: str
    content_hash: str
    total: int
    written: int = 0


class IngestTarget(Protocol):
    """The owner-thread side of a run: the knowledge service implements it for one base."""

    def known(self) -> dict[str, tuple[str | None, str]]:
        """path -> (hash, status) of what the base already has."""
        ...

    def begin(self, doc: DocState, type_: str, size: int) -> None:
        """A document is about to be written (blocks until recorded)."""
        ...

    def write(self, dim: int, points: list[StoredPoint], finished: list[DocState]) -> Future[None]:
        """Write one batch on the owner thread; ``finished`` documents are complete with it."""
        ...

    def failed(self, path: str, reason: str, size: int, was_known: bool) -> None: ...

    def abandon(self, docs: list[DocState]) -> None:
        """Undo the unfinished documents of a cancelled or failed run."""
        ...


@dataclass
class _Counters:
    files_total: int
    bytes_total: int
    started: float = field(default_factory=time.monotonic)
    files_done: int = 0
    bytes_done: int = 0
    chunks_done: int = 0
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    warnings: list[FailedFile] = field(default_factory=list)
    current: str = ""
    parsing: str = ""
    pages_done: int = 0
    pages_total: int = 0


class _Cancelled(Exception):
    pass


_Item = tuple[str, Any]  # ("unchanged", path) | ("failed", (path, reason)) | ("doc", (doc, chunks))


class Ingestion:
    """One run over ``paths`` into ``target``; :meth:`run` returns the report."""

    def __init__(
        self,
        target: IngestTarget,
        embedder: Callable[[], Embedder],
        settings: KnowledgeSettings,
        paths: Sequence[Path | str],
        batch_chunks: int,
        progress: Callable[[IngestProgress], None] | None = None,
        cancel: threading.Event | None = None,
        closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self._target = target
        self._embedder = embedder
        self._settings = settings
        self._paths = paths
        self._batch_chunks = batch_chunks
        self._progress = progress
        self._cancel = cancel or threading.Event()
        self._closed = closed
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=QUEUE_FILES)
        self._stop = threading.Event()
        self._docs: dict[str, DocState] = {}
        self._batch: list[tuple[DocState, int, Chunk, str, str]] = []  # doc, index, chunk, path, type
        self._pending: Future[None] | None = None
        self._sizes: dict[str, int] = {}
        self._known: dict[str, tuple[str | None, str]] = {}
        self._c = _Counters(0, 0)
        self._report_lock = threading.Lock()

    # ------------------------------------------------------------------------------------ run
    def run(self) -> IngestReport:
        self._known = self._target.known()
        files = list(iter_files(self._paths))
        for f in files:
            try:
                self._sizes[str(f)] = f.stat().st_size
            except OSError:
                self._sizes[str(f)] = 0
        self._c = _Counters(files_total=len(files), bytes_total=sum(self._sizes.values()))
        parser = threading.Thread(
            target=self._parse_stage, args=(files,), name="bubble-kb-parse", daemon=True
        )
        parser.start()
        cancelled = False
        try:
            self._consume()
        except _Cancelled:
            cancelled = True
        finally:
            self._shut_down(parser)
        c = self._c
        return IngestReport(
            indexed=tuple(c.indexed),
            unchanged=tuple(c.unchanged),
            failed=tuple(c.failed),
            warnings=tuple(w for w in c.warnings if w.path in set(c.indexed)),
            cancelled=cancelled,
            chunks_added=c.chunks_done
            if not cancelled
            else sum(self._docs[doc_id_for(p)].total for p in c.indexed),
        )

    # ---------------------------------------------------------------------------- stage: parse
    def _parse_stage(self, files: list[Path]) -> None:
        settings = self._settings
        c = self._c

        def on_page(done: int, total: int) -> None:
            c.pages_done, c.pages_total = done, total
            self._report()

        def should_stop() -> bool:
            return self._stop.is_set() or self._cancel.is_set()

        options = ParseOptions(settings.ocr, settings.ocr_max_pages, on_page, should_stop)
        try:
            for f in files:
                if self._stop.is_set():
                    break
                key = str(f)
                item: _Item
                c.parsing, c.pages_done, c.pages_total = key, 0, 0
                try:
                    doc = parse_file(f, options)
                    prev = self._known.get(key)
                    if prev and prev[1] == INDEXED and prev[0] == doc.content_hash:
                        item = ("unchanged", key)
                    else:
                        chunks = chunk_segments(doc.segments, settings.chunk_size, settings.chunk_overlap)
                        if not chunks:
                            raise ParseError("no text found in the file")
                        item = ("doc", (doc, chunks))
                except ParseCancelled:
                    break
                except UserFacingError as exc:
                    item = ("failed", (key, exc.message))
                except MemoryError:
                    item = ("failed", (key, N_("not enough memory to read this file")))
                except Exception as exc:  # noqa: BLE001 - one odd file must never stop the batch
                    log.exception("unexpected error parsing %s", key)
                    item = ("failed", (key, N_(f"could not be read ({type(exc).__name__}: {exc})")))
                if not self._put(item):
                    break
        finally:
            self._put(None)

    def _put(self, item: _Item | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------- stages: embed (here) + write
    def _consume(self) -> None:
        c = self._c
        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, payload = item
            if kind == "unchanged":
                c.unchanged.append(payload)
                self._file_done(payload)
                self._report()
            elif kind == "failed":
                path, reason = payload
                c.failed.append(FailedFile(path, reason))
                self._target.failed(path, reason, self._sizes.get(path, 0), path in self._known)
                self._file_done(path)
                self._report()
            else:
                doc, chunks = payload
                c.current = doc.path
                c.warnings.extend(FailedFile(doc.path, w) for w in doc.warnings)
                d = DocState(doc_id_for(doc.path), doc.path, doc.content_hash, len(chunks))
                self._docs[d.doc_id] = d
                self._target.begin(d, doc.type, doc.size)
                for i, chunk in enumerate(chunks):
                    self._batch.append((d, i, chunk, doc.path, doc.type))
                    if len(self._batch) >= self._batch_chunks:
                        self._check_cancel()
                        self._embed_and_write()
                        self._report()
            self._check_cancel()
        self._check_cancel()  # the parse stage stops mid-file (a long OCR) when cancelled
        self._embed_and_write()
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        self._report()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled

    def _embed_and_write(self) -> None:
        if not self._batch:
            return
        items, self._batch = self._batch, []
        texts = [chunk.text for _, _, chunk, _, _ in items]
        vectors = self._embedder().embed(texts)
        sparse = [sparse_document(t) for t in texts]
        points = [
            StoredPoint(
                point_id(d.doc_id, i, d.content_hash),
                vectors[n],
                sparse[n],
                {
                    "doc_id": d.doc_id,
                    "hash": d.content_hash,
                    "path": path,
                    "type": type_,
                    "chunk": i,
                    "text": chunk.text,
                    "position": chunk.position,
                    "heading": chunk.heading,
                    "title": chunk.title,
                    "page": chunk.page,
                },
            )
            for n, (d, i, chunk, path, type_) in enumerate(items)
        ]
        counts: dict[str, int] = {}
        for d, _, _, _, _ in items:
            counts[d.doc_id] = counts.get(d.doc_id, 0) + 1
        finished = []
        for doc_id, n in counts.items():
            d = self._docs[doc_id]
            d.written += n
            if d.written >= d.total:
                finished.append(d)
        if self._pending is not None:
            self._pending.result()  # one batch in flight: write N while N+1 is embedded
        self._pending = self._target.write(int(vectors.shape[1]), points, finished)
        self._c.chunks_done += len(points)
        for d in finished:
            self._c.indexed.append(d.path)
            self._file_done(d.path)

    # ---------------------------------------------------------------------------- bookkeeping
    def _file_done(self, path: str) -> None:
        self._c.files_done += 1
        self._c.bytes_done += self._sizes.get(path, 0)

    def _report(self) -> None:
        if self._progress is None:
            return
        c = self._c
        with self._report_lock:  # the parse stage reports pages, the embed stage batches
            elapsed = max(time.monotonic() - c.started, 1e-6)
            eta = None
            if c.bytes_done > 0:
                eta = max(0.0, (c.bytes_total - c.bytes_done) * elapsed / c.bytes_done)
            self._progress(
                IngestProgress(
                    c.files_done,
                    c.files_total,
                    c.chunks_done,
                    c.current,
                    c.chunks_done / elapsed,
                    eta,
                    c.pages_done,
                    c.pages_total,
                    c.parsing,
                )
            )

    def _shut_down(self, parser: threading.Thread) -> None:
        """Stop and drain the parse stage, wait for the write in flight, abandon unfinished documents."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                if not parser.is_alive():
                    break
                parser.join(0.05)
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:  # noqa: BLE001 - the original error (if any) is what matters
                log.exception("batch write failed during cleanup")
        indexed = set(self._c.indexed)
        unfinished = [d for d in self._docs.values() if d.written < d.total or d.path not in indexed]
        if unfinished and not self._closed():
            self._target.abandon(unfinished)


__all__ = ["DocState", "IngestTarget", "Ingestion"]
