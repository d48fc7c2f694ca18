"""One Bubble per data folder: a QLockFile guards the folder, a QLocalServer brings the window forward.

The first process holds ``data_dir/bubble.lock`` and listens on a local socket whose name is
derived from the data folder. A second launch fails to take the lock, asks the first one to show
its window, and exits. A lock left by a crashed process is stale (its PID is gone) and is taken over.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QLockFile, QObject, Signal, Slot

if TYPE_CHECKING:
    from PySide6.QtNetwork import QLocalServer

log = logging.getLogger(__name__)

ACTIVATE = b"activate\n"


def server_name(data_dir: Path) -> str:
    import hashlib

    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"bubble-{digest}"


class SingleInstance(QObject):
    """``acquire()`` returns True for the first process; later ones notify it and get False."""

    activation_requested = Signal()

    def __init__(self, data_dir: Path, lock_file: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self._name: str | None = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = QLockFile(str(lock_file or self.data_dir / "bubble.lock"))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None
        self.notified_other = False

    @property
    def name(self) -> str:
        """The local socket's name, derived from the data folder."""
        if self._name is None:
            self._name = server_name(self.data_dir)
        return self._name

    def acquire(self, listen: bool = True) -> bool:
        """Take the lock; ``listen=False`` leaves ``listen()`` for later (QtNetwork costs ~10 ms
        of start-up; until then a second launch says Bubble is running without raising it)."""
        if self._lock.tryLock(200):
            if listen:
                self.listen()
            return True
        self.notified_other = self._notify_running_instance()
        return False

    def listen(self) -> None:
        """Accept "show your window" requests from later launches."""
        if self._server is not None or not self._lock.isLocked():
            return
        from PySide6.QtNetwork import QLocalServer

        QLocalServer.removeServer(self.name)  # a socket file left by a crash
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            log.warning("single-instance server could not listen: %s", server.errorString())
            return
        server.newConnection.connect(self._on_server_new_connection)
        self._server = server

    def _notify_running_instance(self, timeout_ms: int = 1000) -> bool:
        from PySide6.QtNetwork import QLocalSocket

        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(timeout_ms):
            return False
        socket.write(ACTIVATE)
        socket.flush()
        socket.waitForBytesWritten(timeout_ms)
        socket.disconnectFromServer()
        return True

    @Slot()
    def _on_server_new_connection(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            socket.readyRead.connect(self._on_socket_ready_read)
            socket.disconnected.connect(socket.deleteLater)

    @Slot()
    def _on_socket_ready_read(self) -> None:
        from PySide6.QtNetwork import QLocalSocket

        socket: Any = self.sender()
        if isinstance(socket, QLocalSocket) and bytes(socket.readAll().data()).startswith(b"activate"):
            self.activation_requested.emit()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()
