"""A one-off background task on its own QThread, reporting progress, success or failure by signal.

For jobs that are not the model's (the inference worker owns that): e.g. importing a GGUF file.
UserFacingError becomes ``failed(message, hint)``; anything else is logged and reported too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from bubble_desktop.core.errors import UserFacingError

log = logging.getLogger(__name__)

# fn(progress, cancel) -> result; progress(fraction, what)
TaskFunction = Callable[[Callable[[float, str], None], threading.Event], Any]


class _TaskCancelled(Exception):
    pass


class _TaskWorker(QObject):
    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, fn: TaskFunction, cancel: threading.Event) -> None:
        super().__init__()
        self._fn = fn
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        def progress(fraction: float, what: str) -> None:
            if self._cancel.is_set():
                raise _TaskCancelled()
            self.progressed.emit(float(fraction), str(what))

        try:
            result = self._fn(progress, self._cancel)
        except _TaskCancelled:
            self.failed.emit(self.tr("Cancelled."), "")
        except UserFacingError as exc:
            self.failed.emit(exc.message, exc.hint)
        except Exception as exc:  # thread boundary
            log.exception("background task failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}", self.tr("Details are in the log file."))
        else:
            self.succeeded.emit(result)


class BackgroundTask(QObject):
    """Runs ``fn`` once on a fresh QThread; ``finished`` fires after success or failure."""

    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, fn: TaskFunction, name: str = "bubble-task", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cancel_event = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = _TaskWorker(fn, self.cancel_event)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progressed.connect(self._on_worker_progressed)
        self._worker.succeeded.connect(self._on_worker_succeeded)
        self._worker.failed.connect(self._on_worker_failed)
        self._thread.finished.connect(self._worker.deleteLater)

    def start(self) -> None:
        self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout_ms: int = 2000) -> bool:
        self.cancel_event.set()
        self._thread.quit()
        return bool(self._thread.wait(timeout_ms))

    @Slot(float, str)
    def _on_worker_progressed(self, fraction: float, what: str) -> None:
        self.progressed.emit(fraction, what)

    @Slot(object)
    def _on_worker_succeeded(self, result: Any) -> None:
        self._thread.quit()
        self._thread.wait(2000)
        self.succeeded.emit(result)
        self.finished.emit()

    @Slot(str, str)
    def _on_worker_failed(self, message: str, hint: str) -> None:
        self._thread.quit()
        self._thread.wait(2000)
        self.failed.emit(message, hint)
        self.finished.emit()
