"""The first knowledge-base question after a chat chose a base: with and without the warm-up.

When a chat chooses a knowledge base, the app starts loading the embedding model in the background
(``KnowledgeService.warm_up``). This bench measures what the first search waits for, in a fresh
process per run (nothing imported or loaded yet):

- ``warm``: warm_up(), then ``--typing`` seconds (the user writes the question), then search;
- ``cold``: the same wait, no warm-up, then search (what the app did before).

Runs alternate. The base (MiniLM, Qdrant Edge on disk) is built once, in a process of its own.
``gui_stall``: the GUI heartbeat (tests/bench/gui_responsiveness.py) in the real main window, from
choosing the base in the chat until the model is loaded, offscreen; the user types meanwhile.

    .venv/bin/python tests/bench/kb_warm_up.py [--runs 3] [--typing 8]

Prints JSON: the first search's seconds in each mode, their medians and warm ÷ cold; the stalls.
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

_BUILD = r"""
import sys
from pathlib import Path
from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings
home, docs = Path(sys.argv[1]), Path(sys.argv[2])
docs.mkdir(parents=True, exist_ok=True)
for i in range(20):
    (docs / f"note{i}.txt").write_text(
        f"Note {i}: the ferry to island {i} leaves the harbour at {6 + i % 12} o'clock.\n", encoding="utf-8"
    )
svc = KnowledgeService(Paths.under(home).ensure(), KnowledgeSettings())
svc.create_base("notes")
svc.add_paths("notes", [docs])
svc.close()
"""

_MEASURE = r"""
import sys, time
from pathlib import Path
from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings
home, mode, typing_s = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
svc = KnowledgeService(Paths.under(home).ensure(), KnowledgeSettings())
if mode == "warm":
    svc.warm_up()
time.sleep(typing_s)
t0 = time.perf_counter()
hits = svc.search("notes", "When does the ferry to island 7 leave?")
print(time.perf_counter() - t0, len(hits))
svc.close()
"""


_GUI = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bubble_desktop.bootstrap import configure_interpreter
configure_interpreter()
from PySide6.QtWidgets import QApplication
from tests.bench.gui_responsiveness import Heartbeat, pump_until
from bubble_desktop.core.chat.service import ChatService
from bubble_desktop.core.chat.store import ConversationStore
from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from bubble_desktop.ui.main_window import AppContext, MainWindow
app = QApplication([])
paths = Paths.under(Path(sys.argv[1])).ensure()
settings = Settings()
kb = KnowledgeService(paths, settings.knowledge)
store = ConversationStore(paths.chats_db)
chat = ChatService(paths, kb, None, store)
w = MainWindow(AppContext(paths, settings, store, chat, lambda *a, **k: None, knowledge=kb))
w.show()
pump_until(app, lambda: "notes" in [a.text() for a in w.chat.kb_menu.actions()], 30)
pump_until(app, lambda: False, 0.3)  # the first paint done
beat = Heartbeat()
beat.start()
t0 = time.perf_counter()
w.chat.kb_menu.actions()[0].setChecked(True)
pump_until(app, lambda: kb.embedder.loaded, 120)
print(json.dumps({"warm_up_s": round(time.perf_counter() - t0, 2), **beat.stop()}))
w.close(); store.close(); kb.close()
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--typing", type=float, default=8.0, help="seconds between choosing a base and asking")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run(
            [sys.executable, "-c", _BUILD, str(home), str(Path(tmp) / "docs")], check=True, cwd=ROOT, env=env
        )
        seconds: dict[str, list[float]] = {"cold": [], "warm": []}
        for i in range(args.runs):
            for mode in ("cold", "warm") if i % 2 == 0 else ("warm", "cold"):
                out = subprocess.run(
                    [sys.executable, "-c", _MEASURE, str(home), mode, str(args.typing)],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    env=env,
                )
                took, hits = out.stdout.split()
                assert int(hits) > 0, out.stdout
                seconds[mode].append(round(float(took), 3))
        gui = []
        for _ in range(args.runs):
            env_gui = {**env, "QT_QPA_PLATFORM": "offscreen"}
            out = subprocess.run(
                [sys.executable, "-c", _GUI, str(home), str(ROOT)],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env_gui,
            )
            gui.append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {m: round(statistics.median(v), 3) for m, v in seconds.items()}
    print(
        json.dumps(
            {
                "typing_s": args.typing,
                "first_search_s": seconds,
                "median_s": med,
                "warm_vs_cold": round(med["warm"] / med["cold"], 3),
                "gui_stall": gui,
                "gui_stall_max_ms": max(g["max_ms"] for g in gui),
                "gui_target": "max <= 50 ms",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
