"""OCR with RapidOCR (PP-OCR Chinese+English models shipped in the wheel, onnxruntime underneath).

OCR runs in one spawned child process (started on first use, kept for the session, shared by the
ingestion threads behind a lock): in-process, RapidOCR held the GIL long enough to stall the GUI
heartbeat by up to 338 ms per A4 page on 2 cores (tests/bench/documents.py); in a child the parent
only waits on a pipe. A child that dies (out of memory, a crash in onnxruntime) fails that image
with a clear reason and is started again for the next one. ``OCR_IN_CHILD = False`` runs it here.
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

OCR_IN_CHILD = True

_lock = threading.Lock()
_engine: Any = None
_engine_error: str | None = None
_child: Any = None  # (process, parent end of the pipe)


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
    arr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])  # RGB -> BGR, what OpenCV pipelines expect
    with _lock:
        raw = _run_in_child(arr) if OCR_IN_CHILD else _recognise(arr)
    lines = [OcrLine(t, sc, (b[0] / scale, b[1] / scale, b[2] / scale, b[3] / scale)) for t, sc, b in raw]
    return _reading_order(lines)


_Raw = list[tuple[str, float, tuple[float, float, float, float]]]


def _recognise(arr: Any) -> _Raw:
    """RapidOCR on a BGR array, here: (text, score, box) per non-empty line."""
    engine = _load()
    try:
        result = engine(arr, use_cls=False)
    except Exception as exc:  # noqa: BLE001 - one odd image is that file's problem
        raise ParseError(f"OCR failed on this image ({type(exc).__name__})") from None
    txts = getattr(result, "txts", None) or ()
    boxes = getattr(result, "boxes", None)
    scores = getattr(result, "scores", None) or ()
    out: _Raw = []
    for i, txt in enumerate(txts):
        if not str(txt).strip():
            continue
        if boxes is not None and i < len(boxes):
            xs = [float(p[0]) for p in boxes[i]]
            ys = [float(p[1]) for p in boxes[i]]
            box = (min(xs), min(ys), max(xs), max(ys))
        else:
            box = (0.0, 0.0, 0.0, 0.0)
        out.append((str(txt), float(scores[i]) if i < len(scores) else 0.0, box))
    return out


def _child_main(conn: Any) -> None:
    """The OCR child: (shape, bytes) in, ("ok", lines) or ("error", message) out, until None."""
    import numpy as np

    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        shape, data = msg
        try:
            arr = np.frombuffer(data, dtype=np.uint8).reshape(shape)
            conn.send(("ok", _recognise(arr)))
        except ParseError as exc:
            conn.send(("error", exc.message))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the child carries on
            conn.send(("error", f"OCR failed on this image ({type(exc).__name__})"))


def _start_child() -> Any:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child_main, args=(child,), name="bubble-ocr", daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _run_in_child(arr: Any) -> _Raw:
    global _child
    if _engine_error is not None:
        raise ParseError(f"OCR is not available: {_engine_error}")
    for attempt in range(2):
        if _child is None or not _child[0].is_alive():
            try:
                _child = _start_child()
            except Exception as exc:  # noqa: BLE001 - no child process: run here instead
                log.warning("cannot start the OCR process (%s); running OCR in this process", exc)
                return _recognise(arr)
        proc, conn = _child
        try:
            conn.send((arr.shape, arr.tobytes()))
            status, payload = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            proc.join(1)
            _child = None
            if attempt == 0:
                continue
            raise ParseError(f"the OCR process stopped unexpectedly (exit code {proc.exitcode})") from None
        if status == "error":
            raise ParseError(str(payload))
        return list(payload)
    raise ParseError("the OCR process stopped unexpectedly")


def shutdown() -> None:
    """End the OCR child (the app calls this on quit; a daemon child also ends with the app)."""
    global _child
    with _lock:
        if _child is not None:
            proc, conn = _child
            try:
                conn.send(None)
                proc.join(2)
            except (OSError, BrokenPipeError):
                pass
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            conn.close()
            _child = None


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


__all__ = ["RENDER_SCALE", "OcrLine", "lines_text", "ocr_image", "shutdown"]
