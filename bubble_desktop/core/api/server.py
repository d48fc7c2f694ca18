"""Run the API app with uvicorn on a thread of its own: ``ApiServer(owner, config).start()`` / ``.stop()``.

The socket is bound here, before uvicorn starts, so "port in use" and "not allowed to bind" are
UserFacingErrors raised by ``start()`` (uvicorn itself would only log and exit), and port 0 gives
a free port (``server.port`` tells which). A bind to anything but loopback needs an API key.

In the app (one model in memory, shared with the chat pane)::

    owner = InferenceOwner(loaded_model, owns_model=False, model_lock=inference_lock)
    server = ApiServer(owner, ApiConfig(host=..., port=..., api_key=..., settings=settings.snapshot()),
                       knowledge=knowledge_service, chat_service=ChatService(paths, knowledge_service),
                       owns_owner=True)
    server.start()   # binds and serves (fast; errors are UserFacingError); server.address for the status bar
    owner.set_model(other_model)   # after the app loads another model (None while none is loaded: 503)
    server.stop()    # off: cancels the API's answers, joins its threads; the shared model stays loaded

``inference_lock`` is held by the app's own inference worker around each answer, so the chat pane
and API requests never run on the model at the same time (API requests wait, in order).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bubble_desktop.core.api.app import ApiConfig, create_app
from bubble_desktop.core.api.owner import InferenceOwner
from bubble_desktop.core.errors import UserFacingError

if TYPE_CHECKING:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.kb.service import KnowledgeService

log = logging.getLogger("bubble_desktop.api")


class ApiServerError(UserFacingError):
    pass


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: ApiConfig) -> None:
    """Refuse what would expose the model without protection."""
    if not is_loopback(config.host) and not config.api_key:
        raise ApiServerError(
            f"Refusing to serve on {config.host}: any computer that can reach it could use your model "
            "and read your knowledge bases.",
            "Set an API key, or serve on 127.0.0.1 only.",
        )
    if not 0 <= config.port <= 65535:
        raise ApiServerError(
            f"Port {config.port} is not a port number.", "Use a port between 1024 and 65535."
        )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ApiServerError(
                f"Port {port} on {host} is already in use.",
                "Stop the other program, or choose another port.",
            ) from exc
        raise ApiServerError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}",
            "Check the address; use 127.0.0.1 for this computer only.",
        ) from exc
    sock.setblocking(False)
    return sock


class ApiServer:
    """The OpenAI-compatible server over an inference owner, on its own thread.

    ``owns_owner``: stop the owner too on ``stop()`` (the CLI); the app passes False and keeps its
    owner (and model) running when the server is switched off.
    """

    def __init__(
        self,
        owner: InferenceOwner,
        config: ApiConfig | None = None,
        *,
        knowledge: KnowledgeService | None = None,
        chat_service: ChatService | None = None,
        owns_owner: bool = False,
    ) -> None:
        self.owner = owner
        self.config = config or ApiConfig()
        self.knowledge = knowledge
        self.chat_service = chat_service
        self.owns_owner = owns_owner
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self.port = self.config.port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/v1"

    @property
    def address(self) -> str:
        """What the status bar shows, e.g. ``127.0.0.1:8765``."""
        return f"{self.config.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Bind, start the owner if needed, and serve; returns once requests are accepted."""
        if self.running:
            return
        check_bind(self.config)
        import uvicorn

        self._sock = _bind(self.config.host, self.config.port)
        self.port = int(self._sock.getsockname()[1])
        self.config = replace(self.config, port=self.port)
        try:
            if not self.owner.running:
                self.owner.start()
            app = create_app(
                self.owner, self.config, knowledge=self.knowledge, chat_service=self.chat_service
            )
            uv_config = uvicorn.Config(
                app,
                log_config=None,  # our logging setup stays as it is
                access_log=False,  # paths only, but noisy; requests are logged by the app
                lifespan="off",
                timeout_graceful_shutdown=3,
                server_header=False,
            )
            self._server = uvicorn.Server(uv_config)
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        ready = threading.Event()
        server, sock = self._server, self._sock

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                log.exception("the API server stopped with an error")
            finally:
                ready.set()

        self._thread = threading.Thread(target=serve, name="bubble-api", daemon=True)
        self._thread.start()
        waited = 0.0
        while not server.started and not ready.is_set() and waited < timeout:
            ready.wait(0.01)
            waited += 0.01
        if not server.started:
            self.stop()
            raise ApiServerError("The API server did not start.", "See the log for details.")
        log.info(
            "API server on %s (key %s, CORS %s)",
            self.url,
            "set" if self.config.api_key else "off",
            ",".join(self.config.cors_origins) or "off",
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (running answers are cancelled); stops the owner too if it is ours."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if self.owns_owner:
            self.owner.stop()
        if thread is not None:
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._server = None
        self._thread = None
        log.info("API server stopped")

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
