"""Per-drain cost of streaming a long Markdown answer into a chat message; prints JSON.

    PYTHONPATH=$PWD QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/stream_render.py [--tokens 2000]

The answer is tests/bench/gui_responsiveness.py's Markdown (headings, bold, lists, code, tables)
cut to ``--tokens`` tokens of 4 characters; ``--per-drain`` tokens arrive between two 30 Hz drains
(2 = 60 tokens/s). For each drain: the time of ``MessageWidget.feed`` (render + document edit) and
the frame time (feed + the event processing that lays out and paints the shown window), in wall
time, and the feed's CPU (thread) time, steadier on a busy machine. Reported: p50/p95/p99/max in
ms, totals per run (mean of ``--repeat`` runs; the process CPU as a median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))] * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--per-drain", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from bubble_desktop.ui.chat_view import ChatView
    from bubble_desktop.ui.markdown_render import LIGHT
    from tests.bench.gui_responsiveness import make_markdown

    app = QApplication.instance() or QApplication(sys.argv)
    text = make_markdown(args.tokens * 4 + 100)[: args.tokens * 4]
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)]
    feeds: list[float] = []
    frames: list[float] = []
    cpus: list[float] = []
    feed_cpu: list[float] = []  # CPU time of each feed (less noisy than wall time on a busy machine)
    for _ in range(args.repeat):
        view = ChatView()
        view.resize(900, 700)
        view.show()
        app.processEvents()
        c0 = time.process_time()
        message = view.add_message("assistant")
        message.begin_stream(LIGHT)
        run_feeds, run_frames, run_cpu = [], [], []
        for i in range(0, len(tokens), args.per_drain):
            t0, u0 = time.perf_counter(), time.thread_time()
            message.feed("".join(tokens[i : i + args.per_drain]))
            t1, u1 = time.perf_counter(), time.thread_time()
            run_cpu.append(u1 - u0)
            app.processEvents()
            t2 = time.perf_counter()
            run_feeds.append(t1 - t0)
            run_frames.append(t2 - t0)
        message.end_stream()
        app.processEvents()
        cpus.append(time.process_time() - c0)
        assert message.text == text
        feeds, frames, feed_cpu = feeds + run_feeds, frames + run_frames, feed_cpu + run_cpu
        view.close()
        view.deleteLater()
        app.processEvents()
    print(
        json.dumps(
            {
                "tokens": len(tokens),
                "chars": len(text),
                "drains_per_run": len(tokens) // args.per_drain,
                "feed_ms": {
                    "p50": pct(feeds, 0.5),
                    "p95": pct(feeds, 0.95),
                    "p99": pct(feeds, 0.99),
                    "max": pct(feeds, 1.0),
                },
                "frame_ms": {
                    "p50": pct(frames, 0.5),
                    "p95": pct(frames, 0.95),
                    "p99": pct(frames, 0.99),
                    "max": pct(frames, 1.0),
                },
                "feed_cpu_ms": {
                    "p50": pct(feed_cpu, 0.5),
                    "p95": pct(feed_cpu, 0.95),
                    "p99": pct(feed_cpu, 0.99),
                    "max": pct(feed_cpu, 1.0),
                },
                "drains_over_0_3_ms_cpu": round(sum(c > 0.0003 for c in feed_cpu) / args.repeat),
                "feed_cpu_total_s": round(sum(feed_cpu) / args.repeat, 3),
                "feed_total_s": round(sum(feeds) / args.repeat, 3),
                "cpu_s_median": round(statistics.median(cpus), 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
