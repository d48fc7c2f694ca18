"""Start-up time of the frozen app versus `bubble` from the venv, measured side by side.

    .venv/bin/python tests/bench/frozen_start.py --bundle dist/bubble --runs 5

Each run starts the app offscreen in a fresh BUBBLE_HOME with BUBBLE_AUTOQUIT_MS=1: the app builds its
services and main window, shows it, and quits 1 ms later. The wall time from spawn to exit is therefore
"start to window shown" plus a short shutdown, the same for both variants. Runs alternate frozen/venv
so that load on the machine hits both alike; prints JSON with every run, the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def one_run(command: list[str]) -> float:
    home = tempfile.mkdtemp(prefix="bubble-start-")
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "BUBBLE_AUTOQUIT_MS": "1",
        "BUBBLE_HOME": home,
        "HF_HUB_OFFLINE": "1",
    }
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(ROOT / "dist" / "bubble"), help="the one-folder bundle")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--venv-python", default=sys.executable)
    args = parser.parse_args()

    frozen = [str(Path(args.bundle) / ("bubble.exe" if os.name == "nt" else "bubble"))]
    venv = [args.venv_python, "-m", "bubble_desktop.app"]
    one_run(frozen)  # warm the page cache for both before timing
    one_run(venv)
    times: dict[str, list[float]] = {"frozen": [], "venv": []}
    for _ in range(args.runs):
        times["frozen"].append(round(one_run(frozen), 3))
        times["venv"].append(round(one_run(venv), 3))
    medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(
        json.dumps(
            {
                "bench": "frozen_start",
                "what": "spawn -> window shown -> quit (BUBBLE_AUTOQUIT_MS=1), seconds",
                "runs": times,
                "median_s": medians,
                "frozen_over_venv": round(medians["frozen"] / medians["venv"], 3),
                "cpu_count": os.cpu_count(),
                "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
