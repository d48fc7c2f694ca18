"""What the in-app source viewer shows: a rendered page (PDF, image) or a document's text with the cited
passage's place in it. Qt-free and slow enough (PDFium rendering, parsing a .docx) to run off the GUI
thread; the viewer calls these from its worker and converts the pixels to a QImage there.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.locate import _match_range, _squeeze
from bubble_desktop.core.kb.parsers import (
    _PARSERS,
    _text_lines,
    detect_type,
    open_pdf,
    read_bytes,
    render_page,
)

# the kinds whose file is shown as it is (so "line 40" is line 40 of what the viewer shows)
RAW_TEXT_KINDS = ("", "text", "markdown", "qa", "csv", "tsv", "json", "jsonl")
PAGED_KINDS = ("pdf", "image")
MAX_RENDER_PIXELS = 40_000_000  # a zoomed page larger than this is rendered smaller


@dataclass(frozen=True)
class PageImage:
    """One rendered page: RGB888 pixels (``stride`` bytes a row) at ``scale`` pixels per page unit."""

    page: int  # 1-based
    page_count: int
    width: float  # page size in page units (PDF points, image pixels)
    height: float
    scale: float
    pixel_width: int
    pixel_height: int
    stride: int
    rgb: bytes


@dataclass(frozen=True)
class TextPreview:
    """A document as text and where the passage sits in it: [start, end) or (-1, -1) when not found."""

    text: str
    start: int
    end: int
    coverage: float
    raw: bool  # the file itself (line numbers hold) rather than text extracted from it


def preview_kind(path: str | Path) -> str:
    """ "page" (rendered page by page), "text", or "" for what cannot be shown."""
    kind = detect_type(Path(path))
    if kind in PAGED_KINDS:
        return "page"
    if kind == "binary":
        return ""
    return "text"


def page_count(path: str | Path) -> int:
    p = Path(path)
    if detect_type(p) == "pdf":
        pdf = open_pdf(str(p))
        try:
            return len(pdf)
        finally:
            pdf.close()
    img = _open_image(p)
    return int(getattr(img, "n_frames", 1))


def _open_image(p: Path) -> object:
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(read_bytes(p)))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ParseError("not a readable image") from None


def render_document_page(
    path: str | Path, page: int, scale: float = 1.0, fit: tuple[float, float] | None = None
) -> PageImage:
    """Page ``page`` (1-based, clamped to the document) of a PDF or image at ``scale`` pixels per unit,
    or, with ``fit`` (pixels; a height of 0 fits the width only), as large as fits that box."""
    p = Path(path)
    if detect_type(p) == "pdf":
        pdf = open_pdf(str(p))
        try:
            n = len(pdf)
            if n == 0:
                raise ParseError("the PDF has no pages")
            page = min(max(page, 1), n)
            pg = pdf[page - 1]
            try:
                w, h = float(pg.get_width()), float(pg.get_height())
                scale = _safe_scale(w, h, _fit_scale(w, h, fit) if fit else scale)
                img = render_page(pg, scale)
            finally:
                pg.close()
        finally:
            pdf.close()
    else:
        from PIL import Image

        src = _open_image(p)
        assert isinstance(src, Image.Image)
        n = int(getattr(src, "n_frames", 1))
        page = min(max(page, 1), n)
        try:
            src.seek(page - 1)
            frame = src.convert("RGB")
        except (OSError, ValueError, EOFError):
            raise ParseError("not a readable image") from None
        w, h = float(frame.width), float(frame.height)
        scale = _safe_scale(w, h, _fit_scale(w, h, fit) if fit else scale)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = frame if size == frame.size else frame.resize(size, Image.Resampling.LANCZOS)
    data = img.tobytes("raw", "RGB")
    return PageImage(page, n, w, h, scale, img.width, img.height, img.width * 3, data)


def _fit_scale(w: float, h: float, fit: tuple[float, float]) -> float:
    by_width = fit[0] / max(w, 1e-6)
    return min(by_width, fit[1] / max(h, 1e-6)) if fit[1] > 0 else by_width


def _safe_scale(w: float, h: float, scale: float) -> float:
    scale = max(scale, 0.05)
    if w * h * scale * scale > MAX_RENDER_PIXELS:
        scale = (MAX_RENDER_PIXELS / max(w * h, 1.0)) ** 0.5
    return scale


FUZZY_MAX_CHARS = 300_000  # difflib over a longer text takes seconds; beyond it only exact matches


def find_passage(text: str, passage: str) -> tuple[int, int, float] | None:
    """[start, end) of ``passage`` in ``text`` and the share of it matched.

    Exact first, then with any whitespace (a chunk's line breaks may differ from the file's), then, for
    a file edited since it was indexed, the best-matching run (difflib, on texts up to FUZZY_MAX_CHARS).
    """
    needle = passage.strip()
    if not needle:
        return None
    at = text.find(needle)
    if at >= 0:
        return at, at + len(needle), 1.0
    chars = [c for c in needle if not c.isspace()]
    m = re.search(r"\s*".join(re.escape(c) for c in chars), text)
    if m is not None:
        return m.start(), m.end(), 1.0
    if len(text) > FUZZY_MAX_CHARS:
        return None
    hay, hay_idx = _squeeze(text)
    found = _match_range(hay, "".join(chars))
    if found is None:
        return None
    lo, hi, coverage = found
    return hay_idx[lo], hay_idx[hi - 1] + 1, coverage


def document_text(path: str | Path) -> tuple[str, bool]:
    """The text the viewer shows for a non-paged document, and whether it is the file as it is."""
    p = Path(path)
    kind = detect_type(p)
    data = read_bytes(p)
    if kind in RAW_TEXT_KINDS:
        return _text_lines(data), True
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ParseError("this kind of file cannot be shown here")
    parts: list[str] = []
    heading: str | None = None
    for seg in parser(data):
        if seg.heading and seg.heading != heading:
            heading = seg.heading
            parts.append(f"{heading}\n")
        parts.append(seg.text.strip())
    return "\n\n".join(x for x in parts if x), False


def text_preview(path: str | Path, passage: str) -> TextPreview:
    text, raw = document_text(path)
    found = find_passage(text, passage) if passage.strip() else None
    if found is None or found[2] < 0.5:
        return TextPreview(text, -1, -1, found[2] if found else 0.0, raw)
    return TextPreview(text, found[0], found[1], found[2], raw)


def line_offset(text: str, line: int) -> int:
    """Character offset of 1-based ``line`` in ``text`` (the end when there are fewer lines)."""
    pos = 0
    for _ in range(max(line, 1) - 1):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return pos


__all__ = [
    "PageImage",
    "TextPreview",
    "document_text",
    "find_passage",
    "line_offset",
    "page_count",
    "preview_kind",
    "render_document_page",
    "text_preview",
]
