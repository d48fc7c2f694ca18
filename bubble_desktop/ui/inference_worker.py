"""The model's thread: one long-lived InferenceWorker moved to a QThread, and its GUI-side controller.

The worker owns the loaded model. Requests arrive by queued signal and carry a request id; every
result carries it back, and the controller drops results of requests it no longer waits for.
Text does not travel by signal (one queued event per token floods the GUI): the worker appends
chunks to the job's :class:`TokenBuffer`, and a ~30 Hz timer on the GUI thread drains it.
Stop is the job's ``threading.Event``, set directly from the GUI thread.
Several answers can be outstanding (one per conversation: the user switched chats and asked again);
the worker runs them one after another in the order sent (queued signals), each keeps its own
buffer, and ``answer_began`` says when a waiting one gets the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from bubble_desktop.core.errors import RemoteCodeConsentRequired, UserFacingError
from bubble_desktop.core.llm.base import GenerationStats, LoadRequest, ModelInfo
from bubble_desktop.core.settings import Settings

if TYPE_CHECKING:
    from bubble_desktop.core.chat.service import Answer, ChatService

log = logging.getLogger(__name__)

DRAIN_INTERVAL_MS = 33  # ~30 Hz


class TokenBuffer:
    """Text chunks handed from the worker thread to the GUI thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def push(self, chunk: str) -> None:
        with self._lock:
            self._parts.append(chunk)

    def drain(self) -> str:
        with self._lock:
            if not self._parts:
                return ""
            text = "".join(self._parts)
            self._parts.clear()
            return text


@dataclass(frozen=True)
class AskJob:
    """One question for the model, with the settings snapshot taken when it was sent."""

    request_id: int
    kind: Literal["ask", "regenerate", "edit"]
    question: str
    settings: Settings
    conversation_id: int | None = None
    kb_names: tuple[str, ...] = ()
    web: bool = False
    message_id: int | None = None  # the message regenerated or edited
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    buffer: TokenBuffer = field(default_factory=TokenBuffer, compare=False)


@dataclass(frozen=True)
class LoadJob:
    request_id: int
    request: LoadRequest
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class AnswerMeta:
    """Known before the first chunk: where the answer is saved and what it was based on."""

    conversation_id: int | None
    sources: tuple[Any, ...] = ()
    notices: tuple[str, ...] = ()
    question_message_id: int | None = None
    message_id: int | None = None


@dataclass(frozen=True)
class AnswerResult:
    conversation_id: int | None
    message_id: int | None
    stats: GenerationStats | None
    error: str | None = None  # shown inline under the partial answer
    hint: str = ""


@dataclass(frozen=True)
class LoadFailure:
    message: str
    hint: str
    needs_consent: bool = False
    cancelled: bool = False


class _LoadCancelled(Exception):
    """Raised from the progress callback to abandon a load the user no longer wants."""


# load_model(request, progress) -> ChatModel; the chat service's ask/regenerate/edit_and_resend.
LoadFunction = Callable[[LoadRequest, Callable[[float, str], None]], Any]


class InferenceWorker(QObject):
    """Lives in the inference thread and owns the model; never touch it from the GUI thread."""

    load_progressed = Signal(int, float, str)
    loaded = Signal(int, object)  # ModelInfo
    load_failed = Signal(int, object)  # LoadFailure
    answer_began = Signal(int)  # the worker took the job (it may have waited behind others)
    answer_started = Signal(int, object)  # AnswerMeta
    answer_finished = Signal(int, object)  # AnswerResult
    unloaded = Signal()

    def __init__(self, load_function: LoadFunction, chat_service: ChatService) -> None:
        super().__init__()
        self._load_function = load_function
        self._service = chat_service
        self._model: Any = None
        # held around each answer and unload; the local API server's owner shares it, so the chat
        # pane and API requests never run on the model at the same time
        self.model_lock = threading.Lock()
        # set when the window closes: questions still queued for this thread are dropped unstarted
        # (starting one would save it to a conversation that the closing window then cannot clean up)
        self.closing = threading.Event()

    @property
    def model(self) -> Any:
        """The loaded model (to share with the API server; use it only under ``model_lock``)."""
        return self._model

    @Slot(object)
    def load(self, job: LoadJob) -> None:
        rid = job.request_id

        def progress(fraction: float, what: str) -> None:
            if job.cancel.is_set():
                raise _LoadCancelled()
            self.load_progressed.emit(rid, float(fraction), str(what))

        self._unload()
        try:
            model = self._load_function(job.request, progress)
        except _LoadCancelled:
            self.load_failed.emit(rid, LoadFailure(self.tr("Loading was cancelled."), "", cancelled=True))
            return
        except RemoteCodeConsentRequired as exc:
            self.load_failed.emit(rid, LoadFailure(exc.message, exc.hint, needs_consent=True))
            return
        except UserFacingError as exc:
            self.load_failed.emit(rid, LoadFailure(exc.message, exc.hint))
            return
        except Exception as exc:  # thread boundary: the user hears about it, the log keeps details
            log.exception("model load failed")
            self.load_failed.emit(
                rid, LoadFailure(f"{type(exc).__name__}: {exc}", self.tr("Details are in the log file."))
            )
            return
        if job.cancel.is_set():
            _unload_model(model)
            self.load_failed.emit(rid, LoadFailure(self.tr("Loading was cancelled."), "", cancelled=True))
            return
        self._model = model
        self.loaded.emit(rid, model.info)

    @Slot(object)
    def ask(self, job: AskJob) -> None:
        rid = job.request_id
        if self.closing.is_set():
            return
        self.answer_began.emit(rid)
        if self._model is None:
            self.answer_finished.emit(
                rid,
                AnswerResult(
                    job.conversation_id,
                    None,
                    None,
                    self.tr("No model is loaded."),
                    self.tr("Choose a model first."),
                ),
            )
            return
        conversation_id = job.conversation_id
        with self.model_lock:
            self._ask_locked(job, rid, conversation_id)

    def _ask_locked(self, job: AskJob, rid: int, conversation_id: int | None) -> None:
        answer: Answer | None = None
        try:
            answer = self._start(job)
            conversation_id = answer.conversation_id
            self.answer_started.emit(
                rid,
                AnswerMeta(
                    conversation_id,
                    tuple(answer.sources),
                    tuple(answer.notices),
                    answer.user_message_id,
                    answer.message_id,
                ),
            )
            for chunk in answer:
                job.buffer.push(chunk)
            stats = answer.stats
            error = stats.error if stats is not None and stats.finish_reason == "error" else None
            self.answer_finished.emit(rid, AnswerResult(conversation_id, answer.message_id, stats, error))
        except UserFacingError as exc:
            self.answer_finished.emit(
                rid,
                AnswerResult(
                    conversation_id,
                    answer.message_id if answer is not None else None,
                    None,
                    exc.message,
                    exc.hint,
                ),
            )
        except Exception as exc:  # thread boundary
            log.exception("generation failed")
            self.answer_finished.emit(
                rid,
                AnswerResult(
                    conversation_id,
                    answer.message_id if answer is not None else None,
                    None,
                    f"{type(exc).__name__}: {exc}",
                    self.tr("Details are in the log file."),
                ),
            )

    def _start(self, job: AskJob) -> Answer:
        kb, web, cancel = job.kb_names, job.web, job.cancel
        if job.kind == "regenerate":
            if job.conversation_id is None:
                raise UserFacingError("There is no answer to regenerate yet.", "Ask a question first.")
            return self._service.regenerate(
                self._model, job.conversation_id, job.settings, kb_names=kb, web=web, cancel=cancel
            )
        if job.kind == "edit":
            if job.message_id is None:
                raise UserFacingError("The edited question is no longer there.", "Ask it again.")
            return self._service.edit_and_resend(
                self._model, job.message_id, job.question, job.settings, kb_names=kb, web=web, cancel=cancel
            )
        return self._service.ask(
            self._model,
            job.question,
            job.settings,
            conversation_id=job.conversation_id,
            kb_names=kb,
            web=web,
            cancel=cancel,
        )

    @Slot()
    def unload(self) -> None:
        self._unload()
        self.unloaded.emit()

    def _unload(self) -> None:
        with self.model_lock:
            model, self._model = self._model, None
        if model is not None:
            _unload_model(model)


def _unload_model(model: Any) -> None:
    try:
        model.unload()
    except Exception:
        log.exception("unloading the model failed")


class InferenceController(QObject):
    """GUI-side owner of the inference thread: starts requests, drains text, drops stale results."""

    # to the worker (queued: the worker lives in another thread)
    _load_requested = Signal(object)
    _ask_requested = Signal(object)
    _unload_requested = Signal()

    # to the UI
    model_loading = Signal(str)  # path
    load_progressed = Signal(float, str)
    model_loaded = Signal(object)  # ModelInfo
    model_load_failed = Signal(object, object)  # LoadFailure, LoadRequest
    answer_began = Signal(int)  # request id: a waiting answer got the model
    answer_started = Signal(int, object)  # request id, AnswerMeta
    text_arrived = Signal(int, str)  # request id, newly streamed text
    answer_finished = Signal(int, object)  # request id, AnswerResult

    def __init__(
        self, load_function: LoadFunction, chat_service: ChatService, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("bubble-inference")
        self._worker = InferenceWorker(load_function, chat_service)
        self._worker.moveToThread(self._thread)
        self._load_requested.connect(self._worker.load)
        self._ask_requested.connect(self._worker.ask)
        self._unload_requested.connect(self._worker.unload)
        self._worker.load_progressed.connect(self._on_worker_load_progressed)
        self._worker.loaded.connect(self._on_worker_loaded)
        self._worker.load_failed.connect(self._on_worker_load_failed)
        self._worker.answer_began.connect(self._on_worker_answer_began)
        self._worker.answer_started.connect(self._on_worker_answer_started)
        self._worker.answer_finished.connect(self._on_worker_answer_finished)
        self._thread.start()
        self._next_id = 0
        self._load: LoadJob | None = None
        self._jobs: dict[int, AskJob] = {}  # outstanding answers, in the order the worker takes them
        self._began: set[int] = set()
        self._model_info: ModelInfo | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self._drain)
        self._started_at = 0.0

    # ---- state -------------------------------------------------------------------------
    @property
    def model_info(self) -> ModelInfo | None:
        return self._model_info

    @property
    def loaded_model(self) -> Any:
        """The model object the worker holds (for the API server, which shares ``model_lock``)."""
        return self._worker.model if self._model_info is not None else None

    @property
    def model_lock(self) -> threading.Lock:
        return self._worker.model_lock

    @property
    def is_loading(self) -> bool:
        return self._load is not None

    @property
    def is_busy(self) -> bool:
        """An answer is being generated (or waits for the model)."""
        return bool(self._jobs)

    @property
    def current_job(self) -> AskJob | None:
        """The oldest outstanding answer (the one the worker runs or takes next)."""
        return next(iter(self._jobs.values()), None)

    def is_waiting(self, request_id: int) -> bool:
        """Whether answer ``request_id`` still waits for the worker (another answer runs)."""
        return request_id in self._jobs and request_id not in self._began

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- requests ----------------------------------------------------------------------
    def load_model(self, request: LoadRequest) -> int:
        """Load in the background; a load already under way is abandoned."""
        if self._load is not None:
            self._load.cancel.set()
        if self._jobs:
            self.stop()
        job = LoadJob(self._new_id(), request)
        self._load = job
        self._model_info = None
        self.model_loading.emit(request.path)
        self._load_requested.emit(job)
        return job.request_id

    def ask(
        self,
        question: str,
        settings: Settings,
        conversation_id: int | None = None,
        kb_names: tuple[str, ...] = (),
        web: bool = False,
        kind: Literal["ask", "regenerate", "edit"] = "ask",
        message_id: int | None = None,
    ) -> AskJob:
        """Start an answer; while another is being written it waits for its turn (the model
        writes one answer at a time)."""
        job = AskJob(
            self._new_id(),
            kind,
            question,
            settings.snapshot(),
            conversation_id,
            tuple(kb_names),
            web,
            message_id,
        )
        self._jobs[job.request_id] = job
        self._started_at = time.monotonic()
        self._ask_requested.emit(job)
        self._timer.start()
        return job

    def stop(self, request_id: int | None = None) -> None:
        """Stop answer ``request_id`` (every outstanding one when None) within about one decode
        step (the worker checks the event); a waiting one ends as soon as its turn comes."""
        for rid, job in self._jobs.items():
            if request_id is None or rid == request_id:
                job.cancel.set()

    def forget(self, request_id: int) -> None:
        """Stop answer ``request_id`` and drop whatever it still sends (its conversation went)."""
        job = self._jobs.pop(request_id, None)
        if job is not None:
            job.cancel.set()
        self._began.discard(request_id)
        if not self._jobs:
            self._timer.stop()

    def forget_current(self) -> None:
        """Stop every answer and drop whatever they still send (the window closes)."""
        self._worker.closing.set()
        for rid in list(self._jobs):
            self.forget(rid)

    def unload_model(self) -> None:
        self._model_info = None
        self._unload_requested.emit()

    # ---- worker results (GUI thread) ---------------------------------------------------
    @Slot(int, float, str)
    def _on_worker_load_progressed(self, rid: int, fraction: float, what: str) -> None:
        if self._load is not None and rid == self._load.request_id:
            self.load_progressed.emit(fraction, what)

    @Slot(int, object)
    def _on_worker_loaded(self, rid: int, info: ModelInfo) -> None:
        if self._load is None or rid != self._load.request_id:
            return
        self._load = None
        self._model_info = info
        self.model_loaded.emit(info)

    @Slot(int, object)
    def _on_worker_load_failed(self, rid: int, failure: LoadFailure) -> None:
        if self._load is None or rid != self._load.request_id:
            return
        request = self._load.request
        self._load = None
        self.model_load_failed.emit(failure, request)

    @Slot(int)
    def _on_worker_answer_began(self, rid: int) -> None:
        if rid in self._jobs:
            self._began.add(rid)
            self.answer_began.emit(rid)

    @Slot(int, object)
    def _on_worker_answer_started(self, rid: int, meta: AnswerMeta) -> None:
        if rid in self._jobs:
            self.answer_started.emit(rid, meta)

    @Slot()
    def _drain(self) -> None:
        if not self._jobs:
            self._timer.stop()
            return
        for rid, job in list(self._jobs.items()):
            text = job.buffer.drain()
            if text and rid in self._jobs:
                self.text_arrived.emit(rid, text)

    @Slot(int, object)
    def _on_worker_answer_finished(self, rid: int, result: AnswerResult) -> None:
        job = self._jobs.get(rid)
        if job is None:
            return  # stale: forgotten
        rest = job.buffer.drain()
        if rest:
            self.text_arrived.emit(rid, rest)
        self._jobs.pop(rid, None)
        self._began.discard(rid)
        if not self._jobs:
            self._timer.stop()
        self.answer_finished.emit(rid, result)

    # ---- shutdown ----------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 1800) -> bool:
        """Cancel everything, stop the thread; True when it ended within ``timeout_ms``."""
        self._worker.closing.set()
        if self._load is not None:
            self._load.cancel.set()
        for job in self._jobs.values():
            job.cancel.set()
        self._timer.stop()
        if not self._thread.isRunning():
            return True
        self._thread.quit()
        ok = bool(self._thread.wait(timeout_ms))
        if ok:
            self._worker._unload()  # the thread has ended: freeing the model here is safe
        else:
            log.warning("inference thread still busy after %d ms", timeout_ms)
        return ok
