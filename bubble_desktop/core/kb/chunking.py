"""Split segments into chunks of about ``size`` characters with ``overlap``, at sentence ends.

Sentence ends are recognised for English (. ! ? ; followed by space) and Chinese (。！？；, no space
needed); line breaks are boundaries too. A sentence longer than a chunk is cut at a space where
there is one (never mid-word when avoidable), else hard (CJK text has no spaces). Every chunk keeps
the position of its first character (page / line / row) and the heading it sits under.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from bubble_desktop.core.kb.types import Chunk, Segment

# A boundary after: CJK sentence enders (with optional closing quotes), latin enders followed by
# whitespace, or a line break.
_BOUNDARY = re.compile(r"(?<=[。！？；])[”’」』）)]*|(?<=[.!?;:])[\"'”’)\]]*(?=\s)|\n+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of sentence-like units that together cover ``text`` exactly."""
    spans = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        if end > pos:
            spans.append((pos, end))
            pos = end
    if pos < len(text):
        spans.append((pos, len(text)))
    return spans


def _split_long(text: str, start: int, end: int, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Cut one over-long unit into windows of at most ``size``, preferring spaces as cut points."""
    pos = start
    while pos < end:
        stop = min(pos + size, end)
        if stop < end:
            cut = text.rfind(" ", pos + size // 2, stop)
            if cut > pos:
                stop = cut + 1
        yield pos, stop
        if stop >= end:
            break
        nxt = stop - overlap
        if overlap and text.find(" ", pos, stop) != -1:  # words: overlap starts at a word start
            sp = text.find(" ", nxt, stop)
            nxt = sp + 1 if sp != -1 and sp + 1 < stop else stop
        pos = max(nxt, pos + 1)


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Chunk ``text`` into spans of at most ``size`` characters overlapping by up to ``overlap``."""
    if size <= 0:
        raise ValueError("size must be positive")
    overlap = max(0, min(overlap, size // 2))
    units: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        if e - s > size:
            units.extend(_split_long(text, s, e, size, overlap))
        else:
            units.append((s, e))
    chunks: list[tuple[int, int]] = []
    i = 0
    n = len(units)
    while i < n:
        start = units[i][0]
        j = i
        end = units[i][1]
        while j + 1 < n and units[j + 1][1] - start <= size:
            j += 1
            end = units[j][1]
        chunks.append((start, end))
        if j + 1 >= n:
            break
        # next chunk starts at the earliest unit (after i) whose start is within `overlap` of the end
        k = j + 1
        while k - 1 > i and end - units[k - 1][0] <= overlap and units[k][1] - units[k - 1][0] <= size:
            k -= 1
        i = k
    return chunks


def _position(seg: Segment, text: str, offset: int) -> str:
    if seg.unit == "line":
        return f"line {seg.start + text.count(chr(10), 0, offset)}"
    return f"{seg.unit} {seg.start}"


PAGED_UNITS = ("page", "slide")


def _page(seg: Segment) -> int | None:
    return seg.start if seg.unit in PAGED_UNITS else None


def chunk_segments(segments: Iterable[Segment], size: int, overlap: int) -> list[Chunk]:
    """Chunks for a whole document: free text split by sentences, atomic rows packed whole."""
    out: list[Chunk] = []
    pack: list[Segment] = []
    pack_len = 0

    def flush_pack() -> None:
        nonlocal pack, pack_len
        if pack:
            first = pack[0]
            out.append(
                Chunk(
                    "\n\n".join(s.text.strip() for s in pack),
                    _position(first, first.text, 0),
                    first.heading,
                    first.title,
                    _page(first),
                )
            )
        pack, pack_len = [], 0

    for seg in segments:
        if seg.atomic and len(seg.text) <= size:
            if pack and (pack_len + len(seg.text) + 2 > size or pack[0].heading != seg.heading):
                flush_pack()
            pack.append(seg)
            pack_len += len(seg.text) + 2
            continue
        flush_pack()
        for s, e in chunk_spans(seg.text, size, overlap):
            piece = seg.text[s:e].strip()
            if not piece:
                continue
            lead = len(seg.text[s:e]) - len(seg.text[s:e].lstrip())
            out.append(Chunk(piece, _position(seg, seg.text, s + lead), seg.heading, seg.title, _page(seg)))
    flush_pack()
    return out
