"""GUI stall while a chat model loads on a worker thread, with and without ``core.native.heavy_imports``.

Each run is a fresh process (torch not yet imported, as when `bubble` starts and loads its model):
a 5 ms QTimer heartbeat on the GUI thread while ``load_model`` runs on a worker. ``off`` replaces
``heavy_imports`` with a no-op (the imports hold the GIL for libtorch's initialisers and full GC
passes); ``on`` is the product. Runs alternate; prints one JSON object.

Run: ``.venv/bin/python tests/bench/load_stall.py [--runs 3] [--model DIR]`` (default: a tiny
random LLaMA built on the fly).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import contextlib, json, sys, threading, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from bubble_desktop.bootstrap import configure_interpreter
configure_interpreter()
app = QApplication([])
mode, model_dir = sys.argv[1], sys.argv[2]
import bubble_desktop.core.llm.loader as loader
if mode == "off":
    loader.heavy_imports = contextlib.nullcontext
from bubble_desktop.core.llm.base import LoadRequest
gaps, last, done, took = [], [time.perf_counter()], threading.Event(), []
def beat():
    now = time.perf_counter(); gaps.append((now - last[0]) * 1000 - 5); last[0] = now
    if done.is_set(): app.quit()
timer = QTimer(); timer.timeout.connect(beat); timer.start(5)
def work():
    t0 = time.perf_counter()
    loader.load_model(LoadRequest(path=model_dir))
    took.append(time.perf_counter() - t0)
    done.set()
QTimer.singleShot(50, lambda: threading.Thread(target=work, daemon=True).start())
app.exec()
g = sorted(gaps)
print(json.dumps({"max_ms": g[-1], "p99_ms": g[int(len(g) * 0.99)], "load_s": took[0]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", help="a model folder (default: a tiny random LLaMA)")
    args = parser.parse_args()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bubble-load-stall-") as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from tests.fixtures.tiny_models import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for _ in range(args.runs):
            for mode in ("off", "on"):
                out = subprocess.run(
                    [sys.executable, "-c", _CHILD, mode, model],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    result: dict[str, object] = {"runs": args.runs, "load_avg": os.getloadavg()[0], "model": model}
    for mode, rs in runs.items():
        result[mode] = {
            "max_stall_ms": [round(r["max_ms"], 1) for r in rs],
            "median_max_stall_ms": round(statistics.median(r["max_ms"] for r in rs), 1),
            "median_p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 1),
            "median_load_s": round(statistics.median(r["load_s"] for r in rs), 2),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
