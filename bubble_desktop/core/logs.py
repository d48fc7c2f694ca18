"""Rotating log file in the log folder, plus hooks that log uncaught exceptions."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def setup_logging(log_dir: Path, level: int = logging.INFO) -> Path:
    """Send the ``bubble_desktop`` loggers to ``log_dir/bubble.log`` (1 MB x 5 files)."""
    import logging.handlers  # socket, pickle, queue...: not before the window shows

    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "bubble.log"
    root = logging.getLogger("bubble_desktop")
    for h in list(root.handlers):
        if getattr(h, "_bubble", False):
            root.removeHandler(h)
            h.close()
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=1_000_000, backupCount=5, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._bubble = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return log_file
