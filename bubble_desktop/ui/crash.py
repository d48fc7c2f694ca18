"""Unexpected exceptions: written to the log file, shown in one non-modal dialog; the app keeps running.

``sys.excepthook`` catches what escapes on the GUI thread (slots, event handlers);
``threading.excepthook`` what escapes a Python thread. Both hand the report to a QObject on the
GUI thread by queued signal, so the dialog is always created there.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6 import QtCore  # QtCore.Qt on use: its first touch costs ~20 ms (ui/theme.py)
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import bubble_desktop

log = logging.getLogger("bubble_desktop.crash")


class CrashDialog(QDialog):
    """Non-modal; later reports are appended instead of opening more dialogs."""

    def __init__(self, log_file: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("crashDialog")
        self.setWindowTitle(self.tr("Something went wrong"))
        self.setModal(False)
        self.resize(640, 420)
        where = (
            self.tr("The details were also written to %1.").replace("%1", str(log_file)) if log_file else ""
        )
        intro = QLabel(
            self.tr(
                "Bubble hit an unexpected error and carries on. If something no longer works, "
                "restart the app. You can copy the details below into a bug report."
            )
            + (" " + where if where else "")
        )
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QPlainTextEdit()
        self.details.setObjectName("crashDetails")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton(self.tr("Copy details"))
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self._on_copy_button_clicked)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.details, 1)
        layout.addWidget(buttons)
        self.reports = 0

    def add_report(self, text: str) -> None:
        self.reports += 1
        if self.reports > 1:
            self.details.appendPlainText("\n" + "-" * 60 + "\n")
        self.details.appendPlainText(text)

    @Slot()
    def _on_copy_button_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.details.toPlainText())


class CrashHandler(QObject):
    """Install with ``install()``; ``uninstall()`` puts the previous hooks back (tests)."""

    _reported = Signal(str)
    crash_reported = Signal(str)

    def __init__(self, log_file: Path | None = None, parent_widget: QWidget | None = None) -> None:
        super().__init__()
        self.log_file = log_file
        self._parent_widget = parent_widget
        self.dialog: CrashDialog | None = None
        self._previous_sys: Any = None
        self._previous_threading: Any = None
        # queued when emitted from another thread: the dialog is made on the GUI thread
        self._reported.connect(self._on_reported)

    def set_parent_widget(self, widget: QWidget | None) -> None:
        self._parent_widget = widget

    def install(self) -> None:
        self._previous_sys = sys.excepthook
        self._previous_threading = threading.excepthook
        sys.excepthook = self._sys_hook
        threading.excepthook = self._threading_hook

    def uninstall(self) -> None:
        if self._previous_sys is not None:
            sys.excepthook = self._previous_sys
            threading.excepthook = self._previous_threading
            self._previous_sys = self._previous_threading = None

    def _sys_hook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            if self._previous_sys is not None:
                self._previous_sys(exc_type, exc, tb)
            return
        self.report(exc_type, exc, tb, threading.current_thread().name)

    def _threading_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        self.report(args.exc_type, args.exc_value, args.exc_traceback, name)

    def report(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None, thread: str
    ) -> None:
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error in thread %s:\n%s", thread, details)
        text = (
            f"Bubble {bubble_desktop.__version__} · Python "
            f"{sys.version.split()[0]} · thread {thread}\n\n{details}"
        )
        self._reported.emit(text)

    @Slot(str)
    def _on_reported(self, text: str) -> None:
        if self.dialog is None:
            self.dialog = CrashDialog(self.log_file, self._parent_widget)
            self.dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
            self.dialog.destroyed.connect(self._on_dialog_destroyed)
        self.dialog.add_report(text)
        self.dialog.show()
        self.dialog.raise_()
        self.crash_reported.emit(text)

    @Slot()
    def _on_dialog_destroyed(self) -> None:
        self.dialog = None
