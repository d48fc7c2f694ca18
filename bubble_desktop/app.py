"""Composition root of the desktop app: the only module that wires core and ui together.

Start-up stays light: nothing imports torch or transformers before the window is shown; the
configured model starts loading on the inference thread right after.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from bubble_desktop.bootstrap import build_context, configure_interpreter

log = logging.getLogger("bubble_desktop.app")


def _install_language(app: Any, language: str) -> None:
    try:
        from bubble_desktop.ui import i18n
    except ImportError:
        return
    install = getattr(i18n, "install_translator", None) or getattr(i18n, "apply_language", None)
    if callable(install):
        try:
            install(app, language)
        except Exception:
            log.exception("could not install the translation")


def _apply_theme(app: Any, theme: str, font_size: int, quick: bool = False) -> None:
    try:
        from bubble_desktop.ui.theme import apply_theme
    except ImportError:
        return
    apply_theme(app, theme, font_size, quick=quick)


def _speed_up_pyside_import_hook() -> None:
    """PySide6 checks every module imported after it for "PySide6" in its source (for its
    ``__feature__`` switches), through ``inspect.getsource``: ~0.25 ms a module, ~50 ms of start-up.
    Reading the file's bytes answers the same question ~10x faster; anything else goes to PySide6's
    own check. Nothing here uses ``__feature__``; if PySide6 changes this, it is left alone."""
    feature = sys.modules.get("shibokensupport.feature") or sys.modules.get("PySide6.support.feature")
    original = getattr(feature, "_mod_uses_pyside", None)
    if original is None or getattr(original, "_bubble", False):
        return

    def uses_pyside(module: Any) -> bool:
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py"):
            try:
                with open(file, "rb") as source:
                    return b"PySide6" in source.read()
            except OSError:
                pass
        return bool(original(module))

    uses_pyside._bubble = True  # type: ignore[attr-defined]
    feature._mod_uses_pyside = uses_pyside  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    """Show the window's frame at once, then build it (settings, stores, widgets) after its first
    paint; the knowledge bases open and the model starts loading after that."""
    argv = list(sys.argv if argv is None else argv)
    if "--smoke-test" in argv:  # frozen-app self test (packaging issue): bubble_desktop/smoke.py
        from bubble_desktop.smoke import main as smoke_main

        return smoke_main(argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    _speed_up_pyside_import_hook()

    from bubble_desktop import APP_NAME
    from bubble_desktop.core.appearance import peek_appearance
    from bubble_desktop.core.logs import setup_logging
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.ui.crash import CrashHandler
    from bubble_desktop.ui.single_instance import SingleInstance

    configure_interpreter()
    app = QApplication.instance() or QApplication(argv)
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("O.Bubble")
    app.setQuitOnLastWindowClosed(True)
    try:
        from bubble_desktop.ui.resources import app_icon

        app.setWindowIcon(app_icon())
    except ImportError:
        pass

    paths = Paths.default().ensure()
    appearance = peek_appearance(paths.settings_file)
    _apply_theme(app, appearance.theme, appearance.font_size, quick=True)  # exact once built
    _install_language(app, appearance.language)

    guard = SingleInstance(paths.data_dir, paths.lock_file)
    if not guard.acquire(listen=False):  # listen() once the window is up
        message = app.translate("App", "O.Bubble is already running with the data folder %1.").replace(
            "%1", str(paths.data_dir)
        )
        print(message, file=sys.stderr)
        if not guard.notified_other and not os.environ.get("BUBBLE_AUTOQUIT_MS"):
            QMessageBox.information(None, APP_NAME, message)
        return 0

    crash = CrashHandler(None)  # the log file is set up right after the window shows
    crash.install()
    built: dict[str, Any] = {}
    window = None
    try:
        from bubble_desktop.ui.main_window import WINDOW_STATE_FILE, MainWindow, StartingView

        # the frame only: it is on screen before the heavy imports, at last time's size and place
        window = MainWindow(None, state_file=paths.config_dir / WINDOW_STATE_FILE)
        crash.set_parent_widget(window)
        guard.activation_requested.connect(window.bring_to_front)

        def complete() -> None:
            if window is None or window.is_built or built.get("failed"):
                return
            try:
                crash.log_file = setup_logging(paths.log_dir)
            except OSError:
                pass
            guard.listen()
            try:
                from bubble_desktop.core.settings import load_settings

                settings, notices = load_settings(paths.settings_file)
                a = settings.appearance
                _apply_theme(app, a.theme, a.font_size)  # asks the OS for its colour scheme now
                built["ctx"] = build_context(paths, settings, notices, knowledge_now=False)
                window.build(built["ctx"])
            except Exception as exc:
                built["failed"] = True
                log.exception("the window could not be built")
                text = app.translate("App", "O.Bubble could not start: %1").replace("%1", str(exc))
                QMessageBox.critical(window, APP_NAME, text)
                app.exit(1)
                return
            # once the built window is on screen: open the knowledge bases, start loading the model
            QTimer.singleShot(0, window.finish_startup)
            # For CI and start-up benchmarks: quit by itself this many ms after the window is built.
            autoquit = os.environ.get("BUBBLE_AUTOQUIT_MS")
            if autoquit:
                QTimer.singleShot(int(autoquit), window.close)
                QTimer.singleShot(int(autoquit), app.quit)

        # (no Qt.* enum before the window shows: the first one costs ~25 ms, see ui/theme.py)
        starting = window.centralWidget()
        if isinstance(starting, StartingView):  # what MainWindow shows until it is built
            starting.painted.connect(lambda: QTimer.singleShot(0, complete))
        QTimer.singleShot(100, complete)  # in case no paint comes (e.g. started minimized)
        window.show()
        return int(app.exec())
    finally:
        if window is not None:
            window.shutdown()
        ctx = built.get("ctx")
        if ctx is not None:
            for closer in (getattr(ctx.knowledge, "close", None), getattr(ctx.store, "close", None)):
                if callable(closer):
                    try:
                        closer()
                    except Exception:
                        log.exception("closing a store failed")
        crash.uninstall()
        guard.release()


if __name__ == "__main__":
    sys.exit(main())
