"""Start-up cost of ``bubble-cli --help`` against a bare ``python -c pass`` (same interpreter), interleaved.

    .venv/bin/python tests/bench/cli_start.py [--runs 15]

Prints JSON: medians of both, their ratio, and whether --help pulled in torch/transformers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py = sys.executable
    bare = [py, "-c", "pass"]
    cli = [
        py,
        "-c",
        "import sys; from bubble_desktop.cli import main; sys.argv[0] = 'bubble-cli'; main(['--help'])",
    ]
    wall(bare)
    wall(cli)  # warm the disk cache / bytecode
    bare_t, cli_t = [], []
    for _ in range(args.runs):
        bare_t.append(wall(bare))
        cli_t.append(wall(cli))
    probe = subprocess.run(
        [
            py,
            "-c",
            "import sys, contextlib, io\nfrom bubble_desktop.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    "
            "try: main(['--help'])\n    except SystemExit: pass\n"
            "print([m for m in ('torch','transformers','PySide6','qdrant_edge') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    out = {
        "runs": args.runs,
        "python_pass_ms_p50": round(1000 * statistics.median(bare_t), 1),
        "cli_help_ms_p50": round(1000 * statistics.median(cli_t), 1),
        "ratio": round(statistics.median(cli_t) / statistics.median(bare_t), 2),
        "heavy_modules_imported": probe.stdout.strip(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
