"""GUI responsiveness benchmark; prints one JSON object.

1. ``stream_stall``: GUI event-loop stall (a 5 ms QTimer heartbeat; stall = gap - 5 ms) while the
   real window streams from the tiny model at full speed. Target p99 <= 30 ms, max <= 100 ms.
2. ``index_stall``: the same heartbeat while the Knowledge tab indexes 500 small files through
   B's KnowledgeService (MiniLM embedder, Qdrant Edge on disk).
3. ``render_ratio``: CPU to stream a ~30,000-character Markdown answer into a message (tokens of
   ~4 characters arriving at RATE tokens/s, drained on a 30 Hz timer, simulated clock) divided by
   the CPU of one one-shot render of the final text, side by side. Target <= 2.
4. ``startup_ratio``: wall time from process start to "window shown" for ``bubble`` (first run,
   empty BUBBLE_HOME) divided by a bare PySide6 QMainWindow, alternating runs. Target <= 1.5.
   ``bubble`` shows its window's frame first and builds the parts after the first paint; the time
   until they are built is reported too (``app_built_s``, ``built_ratio``).

Run: ``.venv/bin/python tests/bench/gui_responsiveness.py [--skip-index] [--rate 50]``; on a GGUF
through llama.cpp (load and stream stall): ``... --skip-startup --skip-render --skip-index --model FILE.gguf``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HEARTBEAT_MS = 5


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


class Heartbeat:
    """Records how late a 5 ms repeating timer fires: the GUI thread's stalls."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(HEARTBEAT_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> dict[str, float]:
        self._timer.stop()
        stalls = [max(0.0, g - HEARTBEAT_MS) for g in self.gaps]
        return {
            "ticks": len(stalls),
            "p50_ms": round(percentile(stalls, 50), 2),
            "p99_ms": round(percentile(stalls, 99), 2),
            "max_ms": round(max(stalls) if stalls else 0.0, 2),
        }

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000)
        self._last = now


def pump_until(app: Any, cond: Any, timeout: float) -> bool:
    """Run a real event loop (as the app does) until ``cond()`` or ``timeout`` seconds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.perf_counter() + timeout
    poll = QTimer()
    poll.setInterval(10)
    poll.timeout.connect(lambda: (cond() or time.perf_counter() > end) and loop.quit())  # bench only
    poll.start()
    if not cond():
        loop.exec()
    poll.stop()
    return bool(cond())


def bench_stream_stall(app: Any, home: Path, max_new_tokens: int, model: str | None = None) -> dict[str, Any]:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings
    from bubble_desktop.ui.main_window import AppContext, MainWindow
    from tests.fixtures.tiny_models import build_tiny_model

    model_dir = model or build_tiny_model(home / "tiny-model", "llama")
    paths = Paths.under(home / "stream").ensure()
    settings = Settings()
    settings.model.path = str(model_dir)
    settings.sampling.temperature = 0.0
    settings.sampling.max_new_tokens = max_new_tokens
    store = ConversationStore(paths.chats_db)
    window = MainWindow(AppContext(paths, settings, store, ChatService(paths, None, None, store), load_model))
    window.show()
    # the window's first layout and paint (20–45 ms of GUI-thread work here) come before the load, as
    # in the app (shown, built, then the model loads): measured in the load stall, they read as a
    # loading stall of 20–47 ms whatever the load did (``startup`` measures the window's start)
    pump_until(app, lambda: False, 0.3)
    try:
        load_beat = Heartbeat()
        load_beat.start()
        window.load_configured_model()
        assert pump_until(app, lambda: window.inference.model_info is not None, 120), "model did not load"
        load_stall = load_beat.stop()
        window.send("warm up")
        pump_until(app, lambda: not window.inference.is_busy, 120)
        beat = Heartbeat()
        beat.start()
        t0 = time.perf_counter()
        window.send("Write a long answer about the quick brown fox.")
        pump_until(app, lambda: not window.inference.is_busy, 600)
        wall = time.perf_counter() - t0
        result = beat.stop()
        answer = window.chat.view.messages[-1]
        stats = window.ctx.store.messages(window.conversation_id)[-1].stats or {}
        result.update(
            model=Path(model_dir).name,
            load_stall=load_stall,
            chars=len(answer.text),
            tokens=stats.get("completion_tokens"),
            tokens_per_s=round(float(stats.get("tokens_per_s") or 0), 1),
            wall_s=round(wall, 2),
        )
        return result
    finally:
        window.close()
        store.close()


def bench_index_stall(app: Any, home: Path, files: int) -> dict[str, Any]:
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings
    from bubble_desktop.ui.knowledge_tab import KnowledgeTab

    paths = Paths.under(home / "index").ensure()
    docs = home / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (docs / f"note_{i:03d}.txt").write_text(
            f"Note {i}. " + " ".join(f"The fox number {i} jumps over lazy dog {j}." for j in range(12)),
            encoding="utf-8",
        )
    service = KnowledgeService(paths, Settings().knowledge)
    tab = KnowledgeTab(service)
    tab.resize(1000, 700)
    tab.show()
    finished: list[Any] = []
    tab.controller.ingest_finished.connect(lambda *a: finished.append(a))  # GUI-thread signal, bench only
    try:
        beat = Heartbeat()
        beat.start()
        t0 = time.perf_counter()
        tab.add_paths([docs])
        ok = pump_until(app, lambda: bool(finished), 900)
        wall = time.perf_counter() - t0
        # The run ends for the user when the table lists every file: that last refresh (bases, then
        # documents) lands after ingest_finished, so the heartbeat keeps going until it has.
        shown = ok and pump_until(
            app, lambda: sum(d.status == "indexed" for d in tab.model.documents()) >= files, 60
        )
        result = beat.stop()
        report = finished[0][2] if finished else None
        result.update(
            files=files,
            finished=ok,
            table_shown=shown,
            wall_s=round(wall, 2),
            indexed=len(getattr(report, "indexed", ()) or ()) if report is not None else None,
        )
        return result
    finally:
        tab.shutdown()
        tab.close()
        service.close()


def make_markdown(target_chars: int = 30_000) -> str:
    parts: list[str] = []
    i = 0
    while sum(len(p) for p in parts) < target_chars:
        i += 1
        parts.append(f"## Section {i}\n\n")
        parts.append(
            f"This is paragraph {i} with **bold**, *italic* and `inline code`, explaining step {i} "
            "of the process in plain words so that the answer reads like a real one.\n\n"
        )
        parts.append(
            f"- first point of {i}\n- second point with a [link](https://example.com/{i})\n- third\n\n"
        )
        if i % 3 == 0:
            parts.append(f"```python\ndef step_{i}(x):\n    return x * {i}\n```\n\n")
        if i % 4 == 0:
            parts.append("| key | value |\n|---|---|\n| a | 1 |\n| b | 2 |\n\n")
    return "".join(parts)


def bench_render_ratio(app: Any, rate: float) -> dict[str, Any]:
    from bubble_desktop.ui.chat_view import ChatView
    from bubble_desktop.ui.markdown_render import LIGHT

    text = make_markdown()
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)]
    per_flush = max(1, int(round(rate / 30)))  # tokens that arrive between two 30 Hz drains

    def one_shot() -> float:
        view = ChatView()
        view.resize(900, 700)
        view.show()
        app.processEvents()
        c0 = time.process_time()
        message = view.add_message("assistant", text)
        app.processEvents()  # shown: laid out at its real width (only the visible part)
        message.body.document().documentLayout().documentSize()  # the rest of the layout
        cpu = time.process_time() - c0
        view.close()
        view.deleteLater()
        app.processEvents()
        return cpu

    def streamed(paint: bool) -> tuple[float, int]:
        view = ChatView()
        view.resize(900, 700)
        view.show()
        app.processEvents()
        c0 = time.process_time()
        message = view.add_message("assistant")
        message.begin_stream(LIGHT)
        flushes = 0
        for i in range(0, len(tokens), per_flush):
            message.feed("".join(tokens[i : i + per_flush]))
            flushes += 1
            if paint:
                app.processEvents()  # what the GUI does after each 30 Hz drain: relayout + paint
        message.end_stream()
        app.processEvents()
        message.body.document().documentLayout().documentSize()
        cpu = time.process_time() - c0
        assert message.body.codes and message.text == text
        view.close()
        view.deleteLater()
        app.processEvents()
        return cpu, flushes

    one_shot()  # warm caches (pygments lexers, fonts)
    shots, streams, painted = [], [], []
    flushes = 0
    for _ in range(5):  # medians of 5: single runs vary by ±20% on a busy machine
        shots.append(one_shot())
        cpu, flushes = streamed(paint=False)
        streams.append(cpu)
        cpu, flushes = streamed(paint=True)
        painted.append(cpu)
    shot = statistics.median(shots)
    stream = statistics.median(streams)
    paint = statistics.median(painted)
    return {
        "chars": len(text),
        "tokens_per_s": rate,
        "flushes": flushes,
        "one_shot_cpu_s": round(shot, 3),
        "stream_cpu_s": round(stream, 3),
        "ratio": round(stream / shot, 2),
        "stream_painted_cpu_s": round(paint, 3),
        "ratio_painted_every_update": round(paint / shot, 2),
    }


_BARE = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv)
w = QMainWindow(); w.setWindowTitle("bare"); w.setCentralWidget(QLabel("hello"))
w.resize(1000, 700); w.show()
print("SHOWN", time.time(), flush=True)
QTimer.singleShot(0, app.quit)
app.exec()
"""

# `bubble` calls app.exec() right after window.show() (the frame, before its parts are built):
# stamp the time there; BUILT is when the window's parts (sidebar, chat, menus...) are all in.
_APP = """
import sys, time
from PySide6.QtWidgets import QApplication
real_exec = QApplication.exec
def exec_(*args):
    print("SHOWN", time.time(), flush=True)
    return real_exec()
QApplication.exec = exec_
from bubble_desktop.ui.main_window import MainWindow
real_build = MainWindow.build
def build(self, ctx):
    real_build(self, ctx)
    print("BUILT", time.time(), flush=True)
MainWindow.build = build
from bubble_desktop.app import main
sys.exit(main(["bubble"]))
"""


def bench_startup(runs: int, home: Path) -> dict[str, Any]:
    """Process start -> window shown (and -> built, -> process exit), bare window vs `bubble`,
    alternating. Our package is byte-compiled first, as pip install does on a user's machine
    (with PYTHONDONTWRITEBYTECODE=1, as on this machine, it would otherwise be recompiled each run)."""
    import compileall

    compileall.compile_dir(str(ROOT / "bubble_desktop"), quiet=1)
    env = dict(os.environ, BUBBLE_AUTOQUIT_MS="1", QT_QPA_PLATFORM="offscreen")
    shown: dict[str, list[float]] = {"bare": [], "app": []}
    built: list[float] = []
    exited: dict[str, list[float]] = {"bare": [], "app": []}
    for i in range(runs):
        for kind in ("bare", "app"):
            run_home = home / f"start-{kind}-{i}"
            t0_wall, t0 = time.time(), time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", _BARE if kind == "bare" else _APP],
                env=dict(env, BUBBLE_HOME=str(run_home)),
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            exited[kind].append(time.perf_counter() - t0)
            stamp = next(
                float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("SHOWN")
            )
            shown[kind].append(stamp - t0_wall)
            if kind == "app":
                built.append(
                    next(float(x.split()[1]) for x in done.stdout.splitlines() if x.startswith("BUILT"))
                    - t0_wall
                )
    med = {k: statistics.median(v) for k, v in shown.items()}
    med_exit = {k: statistics.median(v) for k, v in exited.items()}
    return {
        "runs": runs,
        "bare_shown_s": round(med["bare"], 3),
        "app_shown_s": round(med["app"], 3),
        "ratio": round(med["app"] / med["bare"], 2),
        "app_built_s": round(statistics.median(built), 3),
        "built_ratio": round(statistics.median(built) / med["bare"], 2),
        "bare_exit_s": round(med_exit["bare"], 3),
        "app_exit_s": round(med_exit["app"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="simulated tokens/s for render_ratio")
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument(
        "--model", help="stream from this model folder or .gguf (default: a tiny random LLaMA)"
    )
    parser.add_argument(
        "--default-switch-interval", action="store_true", help="keep Python's 5 ms GIL switch"
    )
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from bubble_desktop.bootstrap import configure_interpreter

    if not args.default_switch_interval:
        configure_interpreter()  # what `bubble` does at start-up
    app = QApplication.instance() or QApplication([])
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    with tempfile.TemporaryDirectory(prefix="bubble-bench-") as tmp:
        home = Path(tmp)
        os.environ["BUBBLE_HOME"] = str(home / "home")
        if not args.skip_startup:
            out["startup"] = bench_startup(args.startup_runs, home)
        if not args.skip_render:
            out["render_ratio"] = bench_render_ratio(app, args.rate)
        if not args.skip_stream:
            out["stream_stall"] = bench_stream_stall(app, home, args.max_new_tokens, args.model)
        if not args.skip_index:
            out["index_stall"] = bench_index_stall(app, home, args.files)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
