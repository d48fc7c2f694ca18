"""What PySide6's per-import check costs the app's heavy imports, with and without our quicker one.

Once PySide6 is imported, every later import is searched for the word "PySide6" (PySide's
``__feature__`` switching). The app imports torch, transformers and sentence-transformers after Qt,
on the first model or knowledge load. Each run is a fresh interpreter that imports PySide6, then
(``quick``) installs ``bootstrap.quicken_pyside_import_check`` or (``pyside``) leaves PySide's own
check, then times those imports; ``none`` imports them without PySide6, the floor. Runs interleave.

    .venv/bin/python tests/bench/pyside_imports.py [--runs 5]

Prints JSON: the median import seconds of each mode and quick ÷ pyside.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import sys, time
mode = sys.argv[1]
if mode != "none":
    import PySide6.QtWidgets
if mode == "quick":
    from bubble_desktop.bootstrap import quicken_pyside_import_check
    quicken_pyside_import_check()
t0 = time.perf_counter()
import torch, transformers, sentence_transformers
from transformers import AutoModelForCausalLM
print(time.perf_counter() - t0)
"""


def _run(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    modes = ("pyside", "quick", "none")
    _run("none")  # warm the disk cache and the bytecode
    times: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes[i % 3 :] + modes[: i % 3]:  # rotate the order each round
            times[mode].append(round(_run(mode), 2))
    med = {m: round(statistics.median(v), 2) for m, v in times.items()}
    ratios = [q / p for q, p in zip(times["quick"], times["pyside"], strict=True)]
    print(
        json.dumps(
            {
                "imports": "torch, transformers, sentence_transformers, AutoModelForCausalLM",
                "seconds": times,
                "median_s": med,
                "quick_vs_pyside": round(statistics.median(ratios), 3),
                "pyside_over_none_s": round(med["pyside"] - med["none"], 2),
                "quick_over_none_s": round(med["quick"] - med["none"], 2),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
