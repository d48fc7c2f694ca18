"""Where a cited passage sits on its page: rectangles for the viewer to highlight.

``locate_passage(path, page, text)`` answers for PDFs (the page's PDFium text layer: character
boxes of the best-matching run of characters; pages without one are OCR'd again and the lines that
carry the passage are boxed) and for images (OCR lines). Boxes are in page units with the origin at
the top left and y growing down: PDF points for PDFs, pixels for images; ``width``/``height`` give
the page size in the same units, so a viewer that renders the page at ``scale`` multiplies by it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.parsers import detect_type, open_pdf, render_page

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (top-left origin)


@dataclass(frozen=True)
class PassageBoxes:
    page: int  # 1-based
    width: float
    height: float
    boxes: tuple[Box, ...]
    source: str  # "text" (PDF text layer) or "ocr"
    coverage: float  # share of the passage's characters that were matched on the page


def _squeeze(text: str) -> tuple[str, list[int]]:
    """``text`` without whitespace, and for each kept character its index in ``text``."""
    keep = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    return "".join(ch for _, ch in keep), [i for i, _ in keep]


def _match_range(haystack: str, needle: str) -> tuple[int, int, float] | None:
    """[start, end) in ``haystack`` covering the matching blocks of ``needle``; coverage share."""
    if not needle or not haystack:
        return None
    sm = difflib.SequenceMatcher(None, haystack, needle, autojunk=False)
    blocks = [b for b in sm.get_matching_blocks() if b.size >= 2]
    if not blocks:
        return None
    # the densest window: anchor on the longest block, keep blocks within the needle's length of it
    anchor = max(blocks, key=lambda b: b.size)
    lo, hi = anchor.a, anchor.a + anchor.size
    covered = anchor.size
    for b in blocks:
        if b is anchor:
            continue
        if b.a >= lo - len(needle) and b.a + b.size <= hi + len(needle):
            lo, hi = min(lo, b.a), max(hi, b.a + b.size)
            covered += b.size
    return lo, hi, min(1.0, covered / len(needle))


def _merge_lines(boxes: list[Box]) -> list[Box]:
    """Character boxes → one box per line (chars whose vertical centres are close)."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        cy, h = (y0 + y1) / 2, max(y1 - y0, 1e-3)
        if lines:
            lx0, ly0, lx1, ly1 = lines[-1]
            if abs(cy - (ly0 + ly1) / 2) < max(h, ly1 - ly0) * 0.6 and x0 >= lx0 - h:
                lines[-1] = [min(lx0, x0), min(ly0, y0), max(lx1, x1), max(ly1, y1)]
                continue
        lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]


def _text_layer_boxes(page: Any, text: str) -> tuple[list[Box], float] | None:
    textpage = page.get_textpage()
    try:
        n = textpage.count_chars()
        if n <= 0:
            return None
        page_text = textpage.get_text_range(0, n)
        if len(page_text) != n:  # generated characters: fall back to per-character reading
            page_text = "".join(textpage.get_text_range(i, 1)[:1] or " " for i in range(n))
        hay, hay_idx = _squeeze(page_text)
        needle, _ = _squeeze(text)
        found = _match_range(hay, needle)
        if found is None:
            return None
        lo, hi, coverage = found
        height = page.get_height()
        chars: list[Box] = []
        for k in range(lo, hi):
            left, bottom, right, top = textpage.get_charbox(hay_idx[k])
            if right > left:
                chars.append((left, height - top, right, height - bottom))
        return _merge_lines(chars), coverage
    finally:
        textpage.close()


def _ocr_boxes(image: Any, text: str, scale: float) -> tuple[list[Box], float]:
    from bubble_desktop.core.kb.ocr import ocr_image

    lines = ocr_image(image)
    needle, _ = _squeeze(text)
    # concatenated OCR text, each character remembering its line
    hay_chars: list[str] = []
    owner: list[int] = []
    for i, ln in enumerate(lines):
        sq, _ = _squeeze(ln.text)
        hay_chars.extend(sq)
        owner.extend([i] * len(sq))
    found = _match_range("".join(hay_chars), needle)
    if found is None:
        return [], 0.0
    lo, hi, coverage = found
    picked = sorted(set(owner[lo:hi]))
    return [tuple(v / scale for v in lines[i].box) for i in picked], coverage  # type: ignore[misc]


def locate_passage(path: str | Path, page: int, text: str) -> PassageBoxes | None:
    """Boxes of ``text`` on ``page`` (1-based) of a PDF or image; None when it cannot be placed."""
    p = Path(path)
    kind = detect_type(p)
    if kind == "pdf":
        pdf = open_pdf(str(p))
        try:
            if not 1 <= page <= len(pdf):
                return None
            pg = pdf[page - 1]
            try:
                w, h = pg.get_width(), pg.get_height()
                found = _text_layer_boxes(pg, text)
                if found is not None and found[1] >= 0.5:
                    return PassageBoxes(page, w, h, tuple(found[0]), "text", found[1])
                from bubble_desktop.core.kb.ocr import RENDER_SCALE

                boxes, coverage = _ocr_boxes(render_page(pg), text, RENDER_SCALE)
                if not boxes:
                    return None
                return PassageBoxes(page, w, h, tuple(boxes), "ocr", coverage)
            finally:
                pg.close()
        finally:
            pdf.close()
    if kind == "image":
        from PIL import Image

        try:
            img = Image.open(p)
            if not 1 <= page <= getattr(img, "n_frames", 1):
                return None
            img.seek(page - 1)
            frame = img.convert("RGB")
        except (OSError, ValueError, EOFError):
            raise ParseError("not a readable image") from None
        boxes, coverage = _ocr_boxes(frame, text, 1.0)
        if not boxes:
            return None
        return PassageBoxes(page, float(frame.width), float(frame.height), tuple(boxes), "ocr", coverage)
    return None


__all__ = ["PassageBoxes", "locate_passage"]
