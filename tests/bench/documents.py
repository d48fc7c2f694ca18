"""Documents bench (JSON): PDF text extractors on real PDFs, OCR speed, a 100-page scan end to end.

    PYTHONPATH=. python tests/bench/documents.py [--pages 30] [--scan-pages 100] [PDF ...]

1. Extraction quality, pypdf vs PDFium, interleaved per document: share of the characters of
   ``pdftotext`` (poppler) output that the extractor also produced (multiset overlap, whitespace
   ignored), and pages/s. Default PDFs: what Debian's *-doc packages put under /usr/share/doc.
2. OCR pages/s for an A4 page (rendered at 144 dpi), in a worker thread while a Qt heartbeat runs on
   the main thread (max stall = how long the GUI thread would have been blocked).
3. A scanned PDF of ``--scan-pages`` pages indexed by the real KnowledgeService (MiniLM, Qdrant Edge)
   in a worker thread, heartbeat running: time, peak RSS, chunks.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

# apt-get install debian-edu-doc-zh-cn debian-reference-zh-cn linuxcnc-doc-zh-cn (the linuxcnc "zh_CN"
# manuals turned out untranslated: no CJK character in their first 300 pages) poppler-utils
DEFAULT_PDFS = [
    "/usr/share/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.pdf",
    "/usr/share/debian-reference/debian-reference.zh-cn.pdf",
    "/usr/share/doc/linuxcnc/LinuxCNC_Getting_Started_zh_CN.pdf",
    "/usr/share/doc/linuxcnc/LinuxCNC_Developer_zh_CN.pdf",
    "/usr/share/doc/libtasn1-doc/libtasn1.pdf",
    "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
    "/usr/share/doc/valgrind/valgrind_manual.pdf.gz",
    "/usr/share/doc/fontconfig/fontconfig-user.pdf.gz",
]


def chars(text: str) -> Counter[str]:
    return Counter(ch for ch in text if not ch.isspace())


def overlap(got: str, ref: str) -> float:
    r = chars(ref)
    total = sum(r.values())
    if not total:
        return 1.0
    g = chars(got)
    return sum(min(n, g[c]) for c, n in r.items()) / total


def _sq(text: str) -> str:
    return "".join(text.split())


def cjk_share(text: str) -> float:
    vis = [c for c in text if not c.isspace()]
    return sum(1 for c in vis if "\u4e00" <= c <= "\u9fff") / max(1, len(vis))


def pdftotext_pages(path: Path, n: int) -> list[str]:
    out = subprocess.run(
        ["pdftotext", "-f", "1", "-l", str(n), "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "replace")
    return out.split("\f")[:n]


def pypdf_pages(data: bytes, n: int) -> list[str]:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return [(reader.pages[i].extract_text() or "") for i in range(min(n, len(reader.pages)))]


def pdfium_pages(data: bytes, n: int) -> list[str]:
    from bubble_desktop.core.kb.parsers import open_pdf, pdf_page_text_pdfium

    pdf = open_pdf(data)
    try:
        out = []
        for i in range(min(n, len(pdf))):
            page = pdf[i]
            out.append(pdf_page_text_pdfium(page))
            page.close()
        return out
    finally:
        pdf.close()


def extraction(pdfs: list[Path], pages: int, tmp: Path) -> list[dict[str, object]]:
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    rows = []
    for src in pdfs:
        if not src.exists():
            continue
        path = src
        if src.suffix == ".gz":
            path = tmp / src.stem
            path.write_bytes(gzip.decompress(src.read_bytes()))
        data = path.read_bytes()
        ref = pdftotext_pages(path, pages)
        n = len(ref)
        row: dict[str, object] = {"pdf": src.name, "pages": n, "cjk_share": round(cjk_share("".join(ref)), 3)}
        times: dict[str, list[float]] = {"pypdf": [], "pdfium": []}
        texts: dict[str, list[str]] = {}
        for _ in range(2):  # interleaved rounds
            for name, fn in (("pypdf", pypdf_pages), ("pdfium", pdfium_pages)):
                t0 = time.perf_counter()
                texts[name] = fn(data, n)
                times[name].append(time.perf_counter() - t0)
        for name in ("pypdf", "pdfium"):
            got = texts[name]
            per_page = [overlap(got[i] if i < len(got) else "", ref[i]) for i in range(n)]
            ref_chars = [sum(chars(r).values()) for r in ref]
            weighted = sum(p * w for p, w in zip(per_page, ref_chars, strict=True)) / max(1, sum(ref_chars))
            # the other direction: characters the extractor made up (not in pdftotext)
            extra = overlap("".join(ref), "".join(got))
            # in order (difflib on each page without whitespace): catches scrambled or garbled runs
            ordered = [
                difflib.SequenceMatcher(
                    None, _sq(got[i] if i < len(got) else "")[:3000], _sq(ref[i])[:3000], autojunk=False
                ).ratio()
                for i in range(n)
                if _sq(ref[i])
            ]
            row[name] = {
                "match_pdftotext": round(weighted, 4),
                "ordered_ratio": round(sum(ordered) / max(1, len(ordered)), 4),
                "precision": round(extra, 4),
                "pages_per_s": round(n / min(times[name]), 1),
            }
        rows.append(row)
    return rows


class _Beat:
    """The GUI heartbeat of tests/bench/gui_responsiveness.py around ``work`` run in a thread."""

    def __init__(self) -> None:
        from PySide6.QtWidgets import QApplication

        self.app = QApplication.instance() or QApplication(sys.argv[:1])

    def run(self, work: object) -> tuple[object, dict[str, float]]:
        from PySide6.QtCore import QEventLoop

        from tests.bench.gui_responsiveness import Heartbeat

        result: dict[str, object] = {}

        def target() -> None:
            try:
                result["value"] = work()  # type: ignore[operator]
            except BaseException as exc:  # noqa: BLE001
                result["error"] = exc

        hb = Heartbeat()
        hb.start()
        t = threading.Thread(target=target, daemon=True)
        t.start()
        loop = QEventLoop()
        while t.is_alive():
            loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.001)
        stats = hb.stop()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result.get("value"), stats


def ocr_speed(tmp: Path, beat: _Beat, n: int = 4) -> dict[str, object]:
    from bubble_desktop.core.kb.ocr import lines_text, ocr_image
    from bubble_desktop.core.kb.parsers import open_pdf, render_page
    from tests.e2e import doc_fixtures as F

    src = F.text_pdf(tmp / "ocr-src.pdf")
    pdf = open_pdf(str(src))
    page = pdf[0]
    img = render_page(page)
    page.close()
    pdf.close()
    t0 = time.perf_counter()
    ocr_image(img)  # model load
    load_s = time.perf_counter() - t0

    def work() -> float:
        t = time.perf_counter()
        for _ in range(n):
            lines_text(ocr_image(img))
        return time.perf_counter() - t

    elapsed, stall = beat.run(work)
    assert isinstance(elapsed, float)
    return {
        "image_px": list(img.size),
        "first_call_s": round(load_s, 2),
        "pages_per_s": round(n / elapsed, 3),
        "s_per_page": round(elapsed / n, 2),
        "gui_heartbeat": stall,
    }


def scan_end_to_end(tmp: Path, beat: _Beat, pages: int) -> dict[str, object]:
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import KnowledgeSettings
    from tests.e2e import doc_fixtures as F

    os.environ["BUBBLE_HOME"] = str(tmp / "home")
    src = F.text_pdf(tmp / "e2e-src.pdf")
    scan = F.scanned_pdf(src, tmp / f"scan-{pages}.pdf", pages=pages)
    import psutil

    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    peak_child = [0]

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], proc.memory_info().rss)
            kids = 0
            for k in proc.children(recursive=True):  # the OCR child process
                try:
                    kids += k.memory_info().rss
                except psutil.Error:
                    pass
            peak_child[0] = max(peak_child[0], kids)

    rss0 = proc.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    svc = KnowledgeService(Paths.default(), KnowledgeSettings(ocr_max_pages=max(500, pages)))
    svc.create_base("scan")

    def work() -> object:
        t = time.perf_counter()
        rep = svc.add_paths("scan", [scan])
        return rep, time.perf_counter() - t

    try:
        value, stall = beat.run(work)
        rep, elapsed = value  # type: ignore[misc]
        hits = svc.search(["scan"], "KW-9047 backups", top_k=3)
    finally:
        done.set()
        svc.close()
    return {
        "pages": pages,
        "file_mb": round(scan.stat().st_size / 2**20, 1),
        "seconds": round(elapsed, 1),
        "pages_per_s": round(pages / elapsed, 3),
        "chunks": rep.chunks_added,
        "indexed": len(rep.indexed),
        "warnings": len(rep.warnings),
        "rss_before_mb": round(rss0 / 2**20),
        "peak_rss_mb": round(peak[0] / 2**20),
        "peak_rusage_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_child_rss_mb": round(peak_child[0] / 2**20),
        "top_hit_page": hits[0].page if hits else None,
        "gui_heartbeat": stall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pdfs", nargs="*")
    ap.add_argument("--pages", type=int, default=30, help="pages per real PDF for the extractor comparison")
    ap.add_argument("--scan-pages", type=int, default=100)
    ap.add_argument("--skip", default="", help="comma list of: extract,ocr,scan")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    skip = set(args.skip.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bubble-docbench-"))
    out: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        if "extract" not in skip and shutil.which("pdftotext"):
            out["extraction"] = extraction([Path(p) for p in (args.pdfs or DEFAULT_PDFS)], args.pages, tmp)
        beat = _Beat()
        if "ocr" not in skip:
            out["ocr_a4"] = ocr_speed(tmp, beat)
        if "scan" not in skip:
            out["scan_end_to_end"] = scan_end_to_end(tmp, beat, args.scan_pages)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
