"""OCR with RapidOCR (PP-OCR Chinese+English models shipped in the wheel, onnxruntime underneath).

One engine per process, loaded on first use (about 1 s) and shared by the ingestion threads behind a
lock (onnxruntime sessions are not meant to be entered by two threads at once here, and two cores
gain nothing from it). onnxruntime releases the GIL while it runs, so OCR on the ingestion worker
does not stall the GUI (measured in tests/bench/documents.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from bubble_desktop.core.errors import ParseError

log = logging.getLogger(__name__)

# Pages are rendered at this scale (PDF points -> pixels): 2.0 is 144 dpi, an A4 page 1190 x 1684 px.
RENDER_SCALE = 2.0
# Larger images are scaled down before OCR (the detector resizes anyway; this bounds memory).
MAX_SIDE = 2400

_lock = threading.Lock()
_engine: Any = None
_engine_error: str | None = None


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, confidence and box (x0, y0, x1, y1) in image pixels."""

    text: str
    score: float
    box: tuple[float, float, float, float]


def _load() -> Any:
    global _engine, _engine_error
    if _engine is not None:
        return _engine
    if _engine_error is not None:
        raise ParseError(f"OCR is not available: {_engine_error}")
    try:
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        from rapidocr import RapidOCR

        _engine = RapidOCR(params={"Global.log_level": "error"})
    except Exception as exc:  # noqa: BLE001 - a broken install must fail files, not the app
        _engine_error = f"{type(exc).__name__}: {exc}"
        log.exception("RapidOCR failed to load")
        raise ParseError(f"OCR is not available: {_engine_error}") from None
    return _engine


def ocr_image(image: Any) -> list[OcrLine]:
    """Recognise the text of a PIL image; lines in reading order (top to bottom, left to right)."""
    import numpy as np

    img = image
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    scale = 1.0
    if max(img.size) > MAX_SIDE:
        scale = MAX_SIDE / max(img.size)
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    if img.mode == "L":
        img = img.convert("RGB")
    arr = np.asarray(img)[:, :, ::-1]  # RGB -> BGR, what OpenCV-based pipelines expect
    with _lock:
        engine = _load()
        try:
            result = engine(np.ascontiguousarray(arr), use_cls=False)
        except Exception as exc:  # noqa: BLE001 - one odd image is that file's problem
            raise ParseError(f"OCR failed on this image ({type(exc).__name__})") from None
    txts = getattr(result, "txts", None) or ()
    boxes = getattr(result, "boxes", None)
    scores = getattr(result, "scores", None) or ()
    lines: list[OcrLine] = []
    for i, txt in enumerate(txts):
        if not str(txt).strip():
            continue
        if boxes is not None and i < len(boxes):
            pts = boxes[i]
            xs = [float(p[0]) / scale for p in pts]
            ys = [float(p[1]) / scale for p in pts]
            box = (min(xs), min(ys), max(xs), max(ys))
        else:
            box = (0.0, 0.0, 0.0, 0.0)
        lines.append(OcrLine(str(txt), float(scores[i]) if i < len(scores) else 0.0, box))
    return _reading_order(lines)


def _reading_order(lines: list[OcrLine]) -> list[OcrLine]:
    """Group boxes into rows (overlapping vertically) and read each row left to right."""
    rows: list[list[OcrLine]] = []
    for ln in sorted(lines, key=lambda x: (x.box[1] + x.box[3]) / 2):
        mid = (ln.box[1] + ln.box[3]) / 2
        if rows:
            last = rows[-1][0]
            h = max(last.box[3] - last.box[1], 1.0)
            if abs(mid - (last.box[1] + last.box[3]) / 2) < h * 0.5:
                rows[-1].append(ln)
                continue
        rows.append([ln])
    return [ln for row in rows for ln in sorted(row, key=lambda x: x.box[0])]


def lines_text(lines: list[OcrLine]) -> str:
    """The text of a page: one line per row of boxes, boxes on the same row joined by a space."""
    out: list[str] = []
    prev: OcrLine | None = None
    for ln in lines:
        if prev is not None:
            same_row = (
                abs((ln.box[1] + ln.box[3]) / 2 - (prev.box[1] + prev.box[3]) / 2)
                < max(prev.box[3] - prev.box[1], 1.0) * 0.5
                and ln.box[0] >= prev.box[2] - 2
            )
            out.append(" " if same_row else "\n")
        out.append(ln.text)
        prev = ln
    return "".join(out)


__all__ = ["RENDER_SCALE", "OcrLine", "lines_text", "ocr_image"]
