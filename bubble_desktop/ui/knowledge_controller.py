"""GUI-side owner of the knowledge workers: every KnowledgeService call runs off the GUI thread.

Two long-lived worker objects, each in its own ``QThread``: one for ingestion (add files, re-index:
long jobs that report progress) and one for short calls (list, search, rename, delete…), so a test
search or a refresh is not stuck behind a long indexing job. The service serializes store access
itself, so both may call it at once. Jobs go to a worker by queued signal; results come back by
queued signals carrying the job id; the controller re-emits them as plain events for the tab.
Cancel is a ``threading.Event`` per ingestion job, set directly from the GUI thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDeadlineTimer, QObject, Qt, QThread, Signal, Slot

from bubble_desktop.core.errors import UserFacingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One call to the service: ``op`` is a KnowledgeService method name (or a composite below)."""

    job_id: int
    op: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    cancel: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class JobResult:
    job_id: int
    op: str
    args: tuple[Any, ...]
    value: Any


@dataclass(frozen=True)
class JobFailure:
    job_id: int
    op: str
    message: str
    hint: str
    unexpected: bool


class KnowledgeWorker(QObject):
    """Lives in a worker thread; runs one job at a time against the service."""

    finished = Signal(object)  # JobResult
    failed = Signal(object)  # JobFailure
    progress_changed = Signal(int, object)  # job id, IngestProgress

    INGEST_OPS = frozenset({"add_paths", "reindex"})

    def __init__(self, service: Any) -> None:
        super().__init__()
        self._service = service
        self._job_id = 0

    @Slot(object)
    def run(self, job: Job) -> None:
        if job.cancel is not None and job.cancel.is_set() and job.op in self.INGEST_OPS:
            return self._finish(job, None)  # cancelled while queued
        kwargs = dict(job.kwargs)
        if job.op in self.INGEST_OPS:
            self._job_id = job.job_id
            kwargs["progress"] = self._report_progress
            kwargs["cancel"] = job.cancel
        try:
            if job.op == "add_paths" and kwargs.pop("create_missing", False):
                # one step in the service: a "New" on the query thread may have created it meanwhile
                self._service.create_base(job.args[0], exist_ok=True)
            if job.op == "remove_documents":
                name, paths = job.args
                self._service.remove_documents(name, paths)  # one step: a kill cannot split it
                value = None
            else:
                value = getattr(self._service, job.op)(*job.args, **kwargs)
        except UserFacingError as exc:
            self.failed.emit(JobFailure(job.job_id, job.op, exc.message, exc.hint, False))
            return None
        except Exception as exc:  # the thread boundary: report, never kill the worker
            log.exception("knowledge job %s failed", job.op)
            self.failed.emit(JobFailure(job.job_id, job.op, f"{type(exc).__name__}: {exc}", "", True))
            return None
        return self._finish(job, value)

    def _finish(self, job: Job, value: Any) -> None:
        self.finished.emit(JobResult(job.job_id, job.op, job.args, value))

    def _report_progress(self, progress: Any) -> None:
        # Called in whatever thread the service reports from; the signal is queued to the GUI.
        self.progress_changed.emit(self._job_id, progress)


class KnowledgeController(QObject):
    """What the knowledge tab calls. Results arrive as signals in the GUI thread."""

    bases_listed = Signal(object)  # list[KnowledgeBaseInfo]
    documents_listed = Signal(str, object)  # base name, list[DocumentInfo]
    ingest_started = Signal(int, str, int)  # job id, base name, number of paths
    ingest_progress = Signal(int, object)  # job id, IngestProgress
    ingest_finished = Signal(int, str, object)  # job id, base name, IngestReport | None (cancelled in queue)
    search_finished = Signal(str, object)  # query, list[Hit]
    base_changed = Signal(str, str)  # op (create_base/rename_base/delete_base/remove_document), base name
    failed = Signal(str, str, str)  # op, message, hint

    _ingest_requested = Signal(object)
    _query_requested = Signal(object)

    def __init__(self, service: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._ids = itertools.count(1)
        self._cancels: dict[int, threading.Event] = {}
        self._ingest_names: dict[int, str] = {}
        self._threads: list[QThread] = []
        self._ingest_worker = self._start_worker("bubble-knowledge-ingest", self._ingest_requested)
        self._query_worker = self._start_worker("bubble-knowledge-query", self._query_requested)

    def _start_worker(self, name: str, request: Any) -> KnowledgeWorker:
        thread = QThread(self)
        thread.setObjectName(name)
        worker = KnowledgeWorker(self.service)
        worker.moveToThread(thread)
        thread.finished.connect(worker.deleteLater)
        request.connect(worker.run, Qt.ConnectionType.QueuedConnection)
        worker.finished.connect(self._on_worker_finished, Qt.ConnectionType.QueuedConnection)
        worker.failed.connect(self._on_worker_failed, Qt.ConnectionType.QueuedConnection)
        worker.progress_changed.connect(self._on_worker_progress_changed, Qt.ConnectionType.QueuedConnection)
        thread.start()
        self._threads.append(thread)
        return worker

    # -- requests ------------------------------------------------------------------------------
    def _query(self, op: str, *args: Any, **kwargs: Any) -> int:
        job = Job(next(self._ids), op, args, tuple(kwargs.items()))
        self._query_requested.emit(job)
        return job.job_id

    def refresh_bases(self) -> int:
        return self._query("list_bases")

    def refresh_documents(self, name: str) -> int:
        return self._query("documents", name)

    def create_base(self, name: str, exist_ok: bool = False) -> int:
        return self._query("create_base", name, exist_ok=exist_ok)

    def rename_base(self, old: str, new: str) -> int:
        return self._query("rename_base", old, new)

    def delete_base(self, name: str) -> int:
        return self._query("delete_base", name)

    def remove_documents(self, name: str, paths: Sequence[str]) -> int:
        return self._query("remove_documents", name, tuple(paths))

    def search(self, name: str, query: str, top_k: int = 5) -> int:
        return self._query("search", name, query, top_k=top_k)

    def add_paths(self, name: str, paths: Sequence[Path | str], create_missing: bool = True) -> int:
        """Index files/folders into ``name`` (created first if missing); returns the job id."""
        return self._ingest("add_paths", name, (tuple(str(p) for p in paths),), create_missing=create_missing)

    def reindex(self, name: str) -> int:
        return self._ingest("reindex", name, ())

    def _ingest(self, op: str, name: str, extra: tuple[Any, ...], **kwargs: Any) -> int:
        job_id = next(self._ids)
        cancel = threading.Event()
        self._cancels[job_id] = cancel
        self._ingest_names[job_id] = name
        count = len(extra[0]) if extra else 0
        self.ingest_started.emit(job_id, name, count)
        self._ingest_requested.emit(Job(job_id, op, (name, *extra), tuple(kwargs.items()), cancel))
        return job_id

    @property
    def busy(self) -> bool:
        """True while an ingestion job is queued or running."""
        return bool(self._cancels)

    def cancel_ingestion(self) -> None:
        """Cancel the running ingestion (between batches) and everything queued behind it."""
        for event in self._cancels.values():
            event.set()

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Cancel, stop both threads; True when they stopped within ``timeout_ms`` in total."""
        self.cancel_ingestion()
        for thread in self._threads:
            thread.quit()
        deadline = QDeadlineTimer(timeout_ms)
        stopped = all(thread.wait(deadline) for thread in self._threads)
        if not stopped:
            log.warning("knowledge worker did not stop within %d ms", timeout_ms)
        return stopped

    # -- results -------------------------------------------------------------------------------
    @Slot(object)
    def _on_worker_finished(self, result: JobResult) -> None:
        op = result.op
        if op == "list_bases":
            self.bases_listed.emit(list(result.value))
        elif op == "documents":
            self.documents_listed.emit(result.args[0], list(result.value))
        elif op == "search":
            self.search_finished.emit(result.args[1], list(result.value))
        elif op in KnowledgeWorker.INGEST_OPS:
            self._cancels.pop(result.job_id, None)
            name = self._ingest_names.pop(result.job_id, result.args[0])
            self.ingest_finished.emit(result.job_id, name, result.value)
        else:
            name = result.args[1] if op == "rename_base" else result.args[0]
            self.base_changed.emit(op, name)

    @Slot(object)
    def _on_worker_failed(self, failure: JobFailure) -> None:
        if failure.op in KnowledgeWorker.INGEST_OPS:
            self._cancels.pop(failure.job_id, None)
            name = self._ingest_names.pop(failure.job_id, "")
            self.ingest_finished.emit(failure.job_id, name, None)
        self.failed.emit(failure.op, failure.message, failure.hint)

    @Slot(int, object)
    def _on_worker_progress_changed(self, job_id: int, progress: Any) -> None:
        if job_id in self._cancels:
            self.ingest_progress.emit(job_id, progress)
