"""Where a cited passage sits in a document's text (the viewer's scroll target), and page rendering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.preview import find_passage, line_offset, preview_kind, render_document_page


def test_exact_whitespace_insensitive_and_fuzzy_matches() -> None:
    text = "Intro.\n\nThe quick brown fox\njumps over the lazy dog.\n\nOutro."
    start, end, cov = find_passage(text, "The quick brown fox\njumps over the lazy dog.")  # type: ignore[misc]
    assert text[start:end] == "The quick brown fox\njumps over the lazy dog." and cov == 1.0
    start, end, cov = find_passage(text, "The quick brown fox jumps over the lazy dog.")  # type: ignore[misc]
    assert text[start:end] == "The quick brown fox\njumps over the lazy dog." and cov == 1.0
    zh = "第一段。\n知识库可以回答\n关于你自己文件的问题。\n最后一段。"
    start, end, _ = find_passage(zh, "知识库可以回答关于你自己文件的问题。")  # type: ignore[misc]
    assert zh[start:end] == "知识库可以回答\n关于你自己文件的问题。"
    # edited since it was indexed: the best-matching run, with its coverage
    found = find_passage(text, "The quick brown cat jumps over the lazy dog.")
    assert found is not None and found[2] > 0.8 and "quick brown" in text[found[0] : found[1]]
    assert find_passage(text, "") is None
    assert find_passage(text, "zzzz qqqq") is None


def test_a_big_text_is_searched_in_linear_time() -> None:
    text = "".join(f"line {i} of filler prose\n" for i in range(100_000))
    t = time.perf_counter()
    found = find_passage(text, "line 99990   of\nfiller prose")
    assert found is not None and text[found[0] : found[1]] == "line 99990 of filler prose"
    assert find_passage(text, "line 9999O of filler prose, edited") is None  # no difflib over 2.5 MB
    assert time.perf_counter() - t < 2.0


def test_line_offset() -> None:
    assert line_offset("a\nbb\nccc", 3) == 5 and line_offset("a\nb", 9) == 3 and line_offset("a", 1) == 0


def test_render_a_pdf_page_to_fit_and_reject_a_broken_one(tmp_path: Path) -> None:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF(format="A4")
    for _ in range(2):
        pdf.add_page()
    path = tmp_path / "two.pdf"
    pdf.output(str(path))
    assert preview_kind(path) == "page" and preview_kind(tmp_path / "a.md") == "text"
    page = render_document_page(path, 9, fit=(300.0, 300.0))  # clamped to the last page
    assert page.page == 2 and page.page_count == 2
    assert page.pixel_height == 300 and page.pixel_width < 300
    assert len(page.rgb) == page.stride * page.pixel_height
    wide = render_document_page(path, 1, fit=(600.0, 0.0))
    assert wide.pixel_width == 600 and wide.pixel_height > 800
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(ParseError):
        render_document_page(bad, 1)
