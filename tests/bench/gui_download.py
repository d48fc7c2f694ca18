"""The GUI's heartbeat while the Models page downloads a 1 GB model (issue 11); prints JSON.

The real main window (offscreen Qt) with a one-entry catalog, the hub of our own in its own process
(tests/fixtures/fake_hub.py, as a remote hub would be: its work is not the app's), the Download
button clicked, and a 5 ms QTimer on the GUI thread: the longest it waited beyond its interval is
the stall a user would feel. The download runs in the downloader's threads; progress reaches the
page through queued signals. Target: max stall <= 50 ms.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=. .venv/bin/python tests/bench/gui_download.py [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))
REPO = "bench/big-gguf"
FILE = "big.gguf"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    size = args.size_mb << 20
    with tempfile.TemporaryDirectory(prefix="bubble-bench-gui-download-") as tmp:
        work = Path(tmp)
        os.environ["BUBBLE_HOME"] = str(work / "home")
        folder = work / "hub"
        folder.mkdir()
        from tests.fixtures.tiny_models import build_tiny_gguf

        # a real GGUF (the page checks the header of what it downloaded) padded with real bytes to
        # the size: the download hashes every one of them
        head = build_tiny_gguf(work / "tiny.gguf").read_bytes()
        with open(folder / FILE, "wb") as f:
            f.write(head)
            block = os.urandom(1 << 20)
            left = size - len(head)
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)
        import download as dl  # tests/bench/download.py: the hub in its own process

        dl.REPO = REPO
        hub, url = dl._start_hub(folder)
        try:
            result = run(url, size)
        finally:
            hub.terminate()
            hub.wait(10)
    print(json.dumps(result, indent=2))
    return 0


def run(url: str, size: int) -> dict[str, Any]:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.models.catalog import parse_catalog
    from bubble_desktop.core.models.machine import Machine
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings
    from bubble_desktop.ui.main_window import AppContext, MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    assert app is not None
    paths = Paths.default().ensure()
    (paths.config_dir / "model_sources.json").write_text(
        json.dumps({"order": ["hf"], "endpoints": {"hf": url}}), encoding="utf-8"
    )
    entry = {
        "id": "big-gguf",
        "name": "Big GGUF",
        "family": "bench",
        "kind": "chat",
        "format": "gguf",
        "params_b": 1.0,
        "quant": "Q4_K_M",
        "context": 2048,
        "ram_gb": 2.0,
        "vram_gb": 0.0,
        "languages": ["en"],
        "licence": "MIT",
        "files": [{"path": FILE, "size": size}],
        "sources": {"hf": {"repo": REPO}},
        "source_note": "the benchmark's own file on its own hub",
    }
    store = ConversationStore(paths.chats_db)
    ctx = AppContext(
        paths,
        Settings(),
        store,
        ChatService(paths, None, None, store),
        load_model,
        model_catalog=parse_catalog({"entries": [entry]}),
        machine=Machine(ram_total_gb=16, ram_available_gb=8, disk_free_gb=100),
    )
    window = MainWindow(ctx)
    window.show()
    window.open_models()
    page = window.models_dialog
    assert page.select("big-gguf")
    stalls: list[float] = []
    state: dict[str, Any] = {"last": 0.0, "done": False, "error": None}

    def tick() -> None:
        now = time.perf_counter()
        if state["last"]:
            stalls.append((now - state["last"] - 0.005) * 1000)
        state["last"] = now

    loop = QEventLoop()

    def finished(*_: Any) -> None:
        state["done"] = True
        loop.quit()

    def failed(*a: Any) -> None:
        state["done"], state["error"] = True, a
        loop.quit()

    window.downloads.finished.connect(finished)
    window.downloads.failed.connect(failed)
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    timer.start()
    page.download_button.click()
    QTimer.singleShot(300_000, loop.quit)
    loop.exec()  # the app's own event loop, as while the user waits
    elapsed = time.perf_counter() - t0
    timer.stop()
    window.close()
    store.close()
    assert state["error"] is None, state["error"]
    stalls.sort()
    return {
        "file_mb": size >> 20,
        "wall_s": round(elapsed, 2),
        "mb_s": round((size >> 20) / elapsed, 1),
        "ticks": len(stalls),
        "p50_stall_ms": round(stalls[len(stalls) // 2], 2),
        "p99_stall_ms": round(stalls[int(len(stalls) * 0.99)], 2),
        "max_stall_ms": round(stalls[-1], 2),
        "target": "max <= 50 ms",
    }


if __name__ == "__main__":
    sys.exit(main())
