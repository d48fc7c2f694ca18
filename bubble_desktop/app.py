"""Composition root of the desktop app: the only module that wires core and ui together."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if "--smoke-test" in argv:  # frozen-app self test (packaging issue): bubble_desktop/smoke.py
        from bubble_desktop.smoke import main as smoke_main

        return smoke_main(argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    from bubble_desktop import APP_NAME

    app = QApplication.instance() or QApplication(argv)
    window = QMainWindow()
    window.setWindowTitle(APP_NAME)
    window.setCentralWidget(QLabel(f"{APP_NAME} — the chat window is on its way."))
    window.resize(1000, 700)
    window.show()
    # For CI and start-up benchmarks: quit by itself this many ms after the window is shown.
    autoquit = os.environ.get("BUBBLE_AUTOQUIT_MS")
    if autoquit:
        QTimer.singleShot(int(autoquit), app.quit)
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
