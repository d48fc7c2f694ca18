"""One model, one owner: a worker thread that runs generation jobs one at a time, in FIFO order.

The API server (and, in the app, the GUI) hands jobs to :class:`InferenceOwner`; the bounded
queue refuses a job when full (:class:`QueueFullError`, answered 503 by the server) instead of
letting requests pile up without limit. Each job carries its own ``cancel`` event: set it from
any thread (a client that disconnected, the user pressing Stop) and the running generation stops
within one decode step; a job cancelled while still queued is skipped. A job's results go to its
``sink`` callable as small immutable events, called from the worker thread.

The owner can load its own model (``loader``) or serve one that is already loaded elsewhere
(``InferenceOwner(model, owns_model=False)``): then ``stop()`` leaves the model loaded, and the
caller may share ``model_lock`` with its own generation code so the two never run at once.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bubble_desktop.core.errors import GenerationError, UserFacingError
from bubble_desktop.core.llm.base import ChatModel, GenerationStats

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 16


class QueueFullError(UserFacingError):
    default_hint = "The model is busy with other requests; try again in a moment."


class OwnerStoppedError(UserFacingError):
    default_hint = "Start the API server (or load a model) again."


# --- events a job's sink receives (from the worker thread) -----------------------------------


@dataclass(frozen=True)
class JobStarted:
    """The job left the queue and now has the model."""

    queued_s: float


@dataclass(frozen=True)
class JobMeta:
    """Facts known before the first text chunk (e.g. the numbered sources of a grounded answer)."""

    data: dict[str, Any]


@dataclass(frozen=True)
class JobText:
    text: str


@dataclass(frozen=True)
class JobFinished:
    """The last event of every job: how it ended. ``error`` is a user-facing message or None."""

    stats: GenerationStats
    error: str | None = None
    extra: dict[str, Any] | None = None


JobEvent = JobStarted | JobMeta | JobText | JobFinished
Sink = Callable[[JobEvent], None]
# work(model, job): runs on the worker thread; emits JobMeta/JobText through job.emit and returns
# the final stats (or raises). JobStarted and JobFinished are sent by the owner.
Work = Callable[[ChatModel, "Job"], GenerationStats]


class Job:
    """One unit of work for the model, with its own cancel event and sink."""

    def __init__(self, job_id: int, work: Work, sink: Sink, cancel: threading.Event | None = None) -> None:
        self.id = job_id
        self.work = work
        self.sink = sink
        self.cancel = cancel if cancel is not None else threading.Event()
        self.submitted = time.perf_counter()
        self.done = threading.Event()
        self.extra: dict[str, Any] = {}  # work may leave facts here for JobFinished.extra

    def emit(self, event: JobEvent) -> None:
        try:
            self.sink(event)
        except Exception:  # noqa: BLE001 - a broken sink must not take the worker down
            log.exception("job %s: sink failed", self.id)
            self.cancel.set()


_STOP = object()


class InferenceOwner:
    """Owns one chat model and runs jobs on it one at a time, from a bounded FIFO queue."""

    def __init__(
        self,
        model: ChatModel | None = None,
        *,
        loader: Callable[[], ChatModel] | None = None,
        owns_model: bool | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        model_lock: threading.Lock | None = None,
        name: str = "bubble-inference",
    ) -> None:
        # neither: the app's owner before its first model is loaded (requests get 503 until set_model)
        self._model = model
        self._loader = loader
        # a model handed in belongs to the caller unless told otherwise; a loaded one is ours
        self._owns_model = (model is None) if owns_model is None else owns_model
        self.max_queue = max(1, int(max_queue))
        self.model_lock = model_lock if model_lock is not None else threading.Lock()
        self._name = name
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.max_queue)
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._current: Job | None = None
        self._state_lock = threading.Lock()
        self._accepting = False
        self._ready = threading.Event()
        self._load_error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def model(self) -> ChatModel | None:
        return self._model

    def start(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the worker (loading the model there if a loader was given). With ``wait``, return
        once the model is ready; a load failure is raised here."""
        with self._state_lock:
            if self.running:
                return
            self._ready.clear()
            self._load_error = None
            self._queue = queue.Queue(maxsize=self.max_queue)
            self._accepting = True
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        if wait:
            self._ready.wait(timeout)
            if self._load_error is not None:
                self.stop()
                error = self._load_error
                raise error

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new jobs, cancel the queued and running ones, join the worker; unload the model
        only if this owner loaded it."""
        with self._state_lock:
            self._accepting = False
            thread = self._thread
        if thread is None:
            return
        self._cancel_all()
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # only if a job keeps refilling the queue; cancel again and insist
            self._cancel_all()
            self._queue.put(_STOP)
        thread.join(timeout)
        with self._state_lock:
            self._thread = None
        if self._owns_model and self._model is not None:
            model, self._model = self._model, None
            try:
                model.unload()
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("unloading the model failed")

    def set_model(self, model: ChatModel | None, owns_model: bool = False) -> None:
        """Swap the served model (e.g. the GUI loaded another one); waits for the running job."""
        with self.model_lock:
            old, old_owned = self._model, self._owns_model
            self._model, self._owns_model = model, owns_model
        if old is not None and old_owned and old is not model:
            old.unload()

    def _cancel_all(self) -> None:
        current = self._current
        if current is not None:
            current.cancel.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Job):
                item.cancel.set()
                self._finish_skipped(item, "The API server is stopping.")

    # -- submitting -------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, work: Work, sink: Sink, cancel: threading.Event | None = None) -> Job:
        """Queue a job; raises QueueFullError when the queue is full, OwnerStoppedError when stopped."""
        job = Job(next(self._ids), work, sink, cancel)
        with self._state_lock:
            if not self._accepting:
                raise OwnerStoppedError("The model is not being served.")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFullError(
                    f"Too many requests are waiting for the model ({self.max_queue} queued)."
                ) from None
        return job

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        if self._model is None and self._loader is not None:
            try:
                self._model = self._loader()
                self._owns_model = True
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._load_error = exc
                self._accepting = False
                self._ready.set()
                return
        self._ready.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Job)
            self._run_job(item)

    def _finish_skipped(self, job: Job, error: str | None = None) -> None:
        reason = "error" if error else "cancelled"
        job.emit(JobFinished(GenerationStats(finish_reason=reason, error=error), error))  # type: ignore[arg-type]
        job.done.set()

    def _run_job(self, job: Job) -> None:
        if job.cancel.is_set():  # the client went away while it waited
            self._finish_skipped(job)
            return
        self._current = job
        try:
            with self.model_lock:  # may wait for the app's own answer when the lock is shared
                model = self._model
                if job.cancel.is_set():
                    self._finish_skipped(job)
                    return
                if model is None:
                    self._finish_skipped(job, "No model is loaded.")
                    return
                job.emit(JobStarted(time.perf_counter() - job.submitted))
                try:
                    stats = job.work(model, job)
                    error = stats.error if stats.finish_reason == "error" else None
                except UserFacingError as exc:
                    stats, error = GenerationStats(finish_reason="error", error=exc.message), exc.message
                except Exception as exc:  # noqa: BLE001 - the worker's thread boundary
                    log.exception("job %s failed", job.id)
                    message = GenerationError(f"Generation failed: {type(exc).__name__}: {exc}").message
                    stats, error = GenerationStats(finish_reason="error", error=message), message
                job.emit(JobFinished(stats, error, dict(job.extra) or None))
        finally:
            self._current = None
            job.done.set()
