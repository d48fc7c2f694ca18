"""The source viewer: how long its off-thread work takes, and what the GUI thread feels meanwhile.

- render ms of an A4 page (text PDF and scan) at the window's fit-page size and at a 1800 px fit-width;
- locate_passage ms: text layer, and a scanned page (OCR, cold then warm);
- text_preview ms for a 4.5 MB text file with the passage near its end;
- the GUI heartbeat's stalls (a 5 ms timer) while the viewer opens a scanned page (render + OCR
  locate), flips pages and zooms, next to the same heartbeat idle for 2 s first (on a shared machine
  the idle figure shows what the other processes cost).

    PYTHONPATH=. .venv/bin/python tests/bench/viewer.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _ms(fn: Any, rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"p50": round(statistics.median(times), 1), "max": round(max(times), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from bubble_desktop.core.kb.locate import locate_passage
    from bubble_desktop.core.kb.preview import render_document_page, text_preview
    from tests.e2e import doc_fixtures as F

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        pdf = F.text_pdf(Path(d) / "manual.pdf")
        scan = F.scanned_pdf(pdf, Path(d) / "scan.pdf")
        for name, path in (("text_pdf", pdf), ("scan_pdf", scan)):
            for label, fit in (("fit_page_538x760", (736.0, 760.0)), ("fit_width_1800", (1800.0, 0.0))):
                out[f"render_ms.{name}.{label}"] = _ms(
                    lambda p=path, f=fit: render_document_page(p, 3, 1.0, f), args.rounds
                )
        passage = "\n".join(F.PAGES[2])
        out["locate_ms.text_layer"] = _ms(lambda: locate_passage(pdf, 3, passage), args.rounds)
        t = time.perf_counter()
        found = locate_passage(scan, 2, F.PAGES[1][2])
        out["locate_ms.scan_ocr_cold"] = round((time.perf_counter() - t) * 1000, 1)
        out["locate.scan_found"] = bool(found and found.boxes)
        out["locate_ms.scan_ocr_warm"] = _ms(lambda: locate_passage(scan, 2, F.PAGES[1][2]), 2)
        big = Path(d) / "big.txt"
        big.write_text("".join(f"line {i} of filler prose for the viewer bench\n" for i in range(100_000)))
        out["text_preview_ms.4_5MB"] = _ms(lambda: text_preview(big, "line 99990 of filler prose"), 3)
        out["gui_heartbeat_ms"] = _gui_stall(scan)
    print(json.dumps(out, indent=2))


def _gui_stall(scan: Path) -> dict[str, float]:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from bubble_desktop.core.chat.sources import Source
    from bubble_desktop.ui.source_text import source_view
    from bubble_desktop.ui.source_viewer import SourceViewer
    from tests.e2e import doc_fixtures as F

    app = QApplication.instance() or QApplication([])
    viewer = SourceViewer()
    viewer.resize(800, 900)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(beat)

    def pump(until: Any, limit: float = 60.0) -> None:
        t = time.perf_counter()
        while not until() and time.perf_counter() - t < limit:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    src = Source(1, "kb", "scan.pdf", F.PAGES[1][2], path=str(scan), position="page 2", page=2)
    timer.start()
    last[0] = time.perf_counter()
    pump(lambda: False, 2.0)
    idle = sorted(gaps)
    gaps.clear()
    viewer.show_source(source_view(1, src.to_dict()))  # the first show builds widgets: part of the stall
    pump(lambda: viewer.located and viewer.page_info is not None)
    for page in (3, 1, 2):
        viewer.go_to_page(page)
        pump(lambda p=page: viewer.page_info is not None and viewer.page_info.page == p)
    viewer.fit_width_button.click()
    pump(lambda: viewer.page_label.width() > 600)
    timer.stop()
    viewer.shutdown()
    busy = sorted(gaps)
    return {
        "idle_max": round(idle[-1], 1),
        "idle_p99": round(idle[int(len(idle) * 0.99)], 1),
        "viewer_max": round(busy[-1], 1),
        "viewer_p99": round(busy[int(len(busy) * 0.99)], 1),
        "viewer_s": round(sum(busy) / 1000, 1),
    }


if __name__ == "__main__":
    main()
