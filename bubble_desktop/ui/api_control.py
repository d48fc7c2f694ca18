"""The local OpenAI-compatible API server, switched on and off from Settings → API server.

The server shares the model the window has loaded: the API's inference owner gets the worker's
model object and its ``model_lock``, so there is one copy in memory and the chat pane and API
requests take turns. Starting, stopping and swapping the model all wait (for a port bind, for
uvicorn to finish open streams, for a running answer to end), so they run one at a time on a
background thread; the result comes back as ``state_changed``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.core.settings import ApiSettings, Settings

log = logging.getLogger(__name__)


class ApiControl(QObject):
    """Keeps the API server in the state the settings ask for."""

    # (address like "127.0.0.1:8765" or "" when off, error message or "")
    state_changed = Signal(str, str)

    def __init__(
        self, model_lock: threading.Lock, knowledge: Any, chat_service: Any, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._lock = model_lock
        self._knowledge = knowledge
        self._chat_service = chat_service
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bubble-api-control")
        self._server: Any = None
        self._owner: Any = None
        self._running_config: ApiSettings | None = None
        self._model: Any = None
        self.address = ""

    def set_knowledge(self, knowledge: Any) -> None:
        self._knowledge = knowledge

    def apply(self, settings: Settings, model: Any) -> Future[None]:
        """Start, restart or stop the server to match ``settings.api``; serve ``model``."""
        snapshot = settings.snapshot()
        return self._executor.submit(self._apply, snapshot, model)

    def set_model(self, model: Any) -> Future[None]:
        """The window loaded another model (or none): serve that one."""
        return self._executor.submit(self._set_model, model)

    def shutdown(self, timeout: float = 5.0) -> None:
        future = self._executor.submit(self._stop)
        try:
            future.result(timeout)
        except Exception:  # noqa: BLE001 - closing the app must go on
            log.exception("stopping the API server failed")
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- on the control thread ------------------------------------------------------------

    def _apply(self, settings: Settings, model: Any) -> None:
        self._model = model
        wanted = settings.api
        if not wanted.enabled:
            self._stop()
            self.state_changed.emit("", "")
            return
        if self._server is not None and self._running_config == wanted:
            self._set_model(model)
            self.state_changed.emit(self.address, "")
            return
        self._stop()
        from bubble_desktop.core.api.app import ApiConfig
        from bubble_desktop.core.api.owner import InferenceOwner
        from bubble_desktop.core.api.server import ApiServer

        owner = InferenceOwner(model, owns_model=False, model_lock=self._lock, name="bubble-api-inference")
        config = ApiConfig(
            host=wanted.host.strip() or "127.0.0.1",
            port=wanted.port,
            api_key=wanted.api_key,
            settings=settings,
        )
        server = ApiServer(
            owner, config, knowledge=self._knowledge, chat_service=self._chat_service, owns_owner=True
        )
        try:
            server.start()
        except UserFacingError as exc:
            owner.stop()
            self.state_changed.emit("", f"{exc.message} {exc.hint}".strip())
            return
        except Exception as exc:  # noqa: BLE001 - the app goes on without the API
            log.exception("the API server did not start")
            owner.stop()
            self.state_changed.emit("", f"The API server did not start: {exc}")
            return
        self._server, self._owner, self._running_config = server, owner, wanted
        self.address = str(server.address)
        log.info("API server on %s", self.address)
        self.state_changed.emit(self.address, "")

    def _set_model(self, model: Any) -> None:
        self._model = model
        if self._owner is not None:
            self._owner.set_model(model, owns_model=False)

    def _stop(self) -> None:
        server, self._server, self._owner, self._running_config = self._server, None, None, None
        self.address = ""
        if server is not None:
            server.stop()
            log.info("API server stopped")
