"""Sources under an answer: told apart (file · page/line), the passage in a tooltip, and a click opening the
in-app viewer at the cited page (real PDFs written with fpdf2, rendered by PDFium) or text position."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QToolTip

from bubble_desktop.core.chat.sources import Source
from bubble_desktop.ui.chat_view import MessageWidget
from bubble_desktop.ui.source_text import SourceView, source_view
from bubble_desktop.ui.source_viewer import SourceViewer, source_label
from tests.e2e import doc_fixtures as F

TIMEOUT = 20_000
needs_cjk = pytest.mark.skipif(F.cjk_font() is None, reason="no CJK font on this machine")
MARKER_LINE = F.PAGES[2][2]  # "Marker gamma: KW-9047 appears on page three."


@pytest.fixture
def viewer(qtbot: Any) -> Iterator[SourceViewer]:
    v = SourceViewer()
    qtbot.addWidget(v)
    v.resize(760, 900)
    yield v
    v.shutdown()


@pytest.fixture(scope="module")
def manual_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if F.cjk_font() is None:
        pytest.skip("no CJK font on this machine")
    return F.text_pdf(tmp_path_factory.mktemp("viewer") / "manual.pdf")


def kb_source(path: Path, text: str, position: str, page: int | None = None, number: int = 1) -> SourceView:
    src = Source(number, "kb", path.name, text, path=str(path), position=position, page=page, kb="docs")
    return source_view(number, src.to_dict())


def wait_shown(qtbot: Any, viewer: SourceViewer, source: SourceView) -> None:
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        viewer.show_source(source)


def pdf_text_box(path: Path, page: int, needle: str) -> tuple[float, float, float, float]:
    """Where PDFium's own search finds ``needle`` on ``page``: (x0, y0, x1, y1) in points, top-left origin."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        pg = pdf[page - 1]
        tp = pg.get_textpage()
        searcher = tp.search(needle)
        found = searcher.get_next()
        assert found, f"{needle!r} not on page {page}"
        start, count = found
        boxes = [tp.get_charbox(i) for i in range(start, start + count)]
        h = pg.get_height()
        x0 = min(b[0] for b in boxes)
        x1 = max(b[2] for b in boxes)
        y0 = h - max(b[3] for b in boxes)
        y1 = h - min(b[1] for b in boxes)
        searcher.close()
        tp.close()
        pg.close()
        return x0, y0, x1, y1
    finally:
        pdf.close()


# ---- the list under an answer ------------------------------------------------------------------------
def test_sources_of_one_file_are_told_apart_and_the_tooltip_shows_the_passage(qtbot: Any) -> None:
    lic = Path("/usr/share/common-licenses/Apache-2.0")
    sources = (
        kb_source(lic, "Apache License Version 2.0, January 2004", "line 1", number=1),
        kb_source(lic, "Grant of Copyright License. Subject to the terms", "line 66", number=3),
        kb_source(Path("/docs/report.pdf"), "Revenue grew 12 percent.", "page 12", page=12, number=4),
    )
    widget = MessageWidget("assistant", "answer [1] [3] [4]")
    qtbot.addWidget(widget)
    widget.show()
    widget.set_sources(sources)
    shown = widget.sources_label.text()
    assert "Apache-2.0 · line 1<" in shown and "Apache-2.0 · line 66<" in shown
    assert "report.pdf · p. 12" in shown
    assert source_label(sources[2]) == "report.pdf · p. 12"
    assert source_label(kb_source(Path("/d/deck.pptx"), "x", "slide 2", page=2)) == "deck.pptx · slide 2"

    widget.sources_label.linkHovered.emit("source:3")
    qtbot.waitUntil(QToolTip.isVisible, timeout=3000)
    tip = QToolTip.text()
    assert "Grant of Copyright License. Subject to the terms" in tip
    assert "Apache-2.0 · line 66" in tip and str(lic) in tip
    widget.sources_label.linkHovered.emit("")
    qtbot.waitUntil(lambda: not QToolTip.isVisible(), timeout=3000)


def test_a_long_passage_is_cut_in_the_tooltip() -> None:
    from bubble_desktop.ui.source_viewer import TOOLTIP_CHARS, source_tooltip

    s = kb_source(Path("/x/a.txt"), "word " * 1000, "line 3")
    tip = source_tooltip(s)
    assert "…" in tip and len(tip) < TOOLTIP_CHARS + 400


# ---- PDF: the cited page, highlighted ----------------------------------------------------------------
@needs_cjk
def test_clicking_a_pdf_source_opens_the_viewer_at_the_cited_page_with_the_passage_highlighted(
    qtbot: Any, manual_pdf: Path, viewer: SourceViewer
) -> None:
    source = kb_source(manual_pdf, "\n".join(F.PAGES[2]), "page 3", page=3)
    widget = MessageWidget("assistant", "See [1].")
    qtbot.addWidget(widget)
    widget.set_sources((source,))
    widget.source_activated.connect(viewer.show_source)
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        widget.sources_label.linkActivated.emit("source:1")
    qtbot.waitUntil(lambda: viewer.located, timeout=TIMEOUT)

    assert viewer.isVisible() and viewer.mode == "page"
    assert viewer.page == 3 and viewer.page_count == 3 and viewer.page_spin.value() == 3
    assert viewer.boxes is not None and viewer.boxes.source == "text" and viewer.boxes.coverage > 0.9
    rects = viewer.highlight_rects()
    assert rects
    # the highlight covers the marker as PDFium's own search places it (an independent path)
    x0, y0, x1, y1 = pdf_text_box(manual_pdf, 3, "KW-9047")
    s = viewer.page_info.scale / viewer.devicePixelRatioF()
    marker = QRectF(x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s)
    assert any(r.adjusted(-1, -1, 1, 1).contains(marker) for r in rects), (marker, rects)
    # ...and it is really drawn: the marker's pixels are tinted yellow, the page's corner is white
    img = viewer.grab_page()
    dpr = viewer.devicePixelRatioF()
    cy = int(marker.center().y() * dpr)
    # a pixel of the highlight with no glyph on it: just left of the marker's first character
    tint = QColor(img.pixel(int((marker.left() - 1) * dpr), cy))
    assert tint.red() > 200 and tint.green() > 170 and tint.blue() < 170, tint.getRgb()
    assert QColor(img.pixel(3, 3)).getRgb()[:3] == (255, 255, 255)
    # zoom-to-fit by default: the whole page is in view
    assert viewer.page_label.width() <= viewer.page_scroll.viewport().width()
    assert viewer.page_label.height() <= viewer.page_scroll.viewport().height()

    # page navigation: the next click goes to page 2, no highlight there; back to the cited page
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        viewer.prev_button.click()
    assert viewer.page == 2 and viewer.highlight_rects() == []
    assert viewer.cited_button.isEnabled()
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        viewer.cited_button.click()
    assert viewer.page == 3 and viewer.highlight_rects()


@needs_cjk
def test_zoom_fit_width_and_zoom_in(qtbot: Any, manual_pdf: Path, viewer: SourceViewer) -> None:
    wait_shown(qtbot, viewer, kb_source(manual_pdf, MARKER_LINE, "page 3", page=3))
    fit_page = viewer.page_label.width()
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        viewer.fit_width_button.click()
    assert viewer.zoom_mode == "width" and viewer.page_label.width() > fit_page
    assert viewer.page_label.width() <= viewer.page_scroll.viewport().width()
    wide = viewer.page_label.width()
    with qtbot.waitSignal(viewer.shown_source, timeout=TIMEOUT):
        viewer.zoom_in_button.click()
    assert viewer.zoom_mode == "custom" and viewer.page_label.width() > wide * 1.2


@needs_cjk
def test_a_moved_file_shows_the_stored_passage_with_a_note(
    qtbot: Any, manual_pdf: Path, viewer: SourceViewer, tmp_path: Path
) -> None:
    moved = tmp_path / "manual.pdf"
    shutil.copy(manual_pdf, moved)
    source = kb_source(moved, MARKER_LINE, "page 3", page=3)
    moved.rename(tmp_path / "elsewhere.pdf")
    wait_shown(qtbot, viewer, source)
    assert viewer.mode == "passage"
    assert viewer.note_label.isVisible() and "moved" in viewer.note_label.text()
    assert viewer.passage_view.toPlainText() == MARKER_LINE
    assert not viewer.open_button.isEnabled()


# ---- text: scrolled to the passage -------------------------------------------------------------------
def test_a_text_source_scrolls_to_the_passage_and_highlights_it(
    qtbot: Any, viewer: SourceViewer, tmp_path: Path
) -> None:
    lines = [f"Line {i}: filler text that is not the passage." for i in range(1, 601)]
    lines[449] = "The lighthouse keeper logs the tide every evening at nine."
    lines[450] = "Spare lamps are kept in the north cellar."
    path = tmp_path / "notes.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    passage = "\n".join(lines[449:451])
    wait_shown(qtbot, viewer, kb_source(path, passage, "line 450"))
    assert viewer.mode == "text" and not viewer.note_label.isVisible()
    text = viewer.text_view.toPlainText()
    start, end = viewer.text_range
    assert text[start:end] == passage
    (sel,) = viewer.text_view.extraSelections()
    assert sel.cursor.selectedText().startswith("The lighthouse keeper")
    qtbot.waitUntil(lambda: viewer.text_view.firstVisibleBlock().blockNumber() > 400, timeout=3000)
    first = viewer.text_view.firstVisibleBlock().blockNumber()
    assert first < 449  # the passage's line (block 449) is on screen, not above it
    assert viewer.text_view.cursorRect().top() < viewer.text_view.viewport().height()


def test_an_edited_text_file_falls_back_to_the_stored_line(
    qtbot: Any, viewer: SourceViewer, tmp_path: Path
) -> None:
    path = tmp_path / "notes.md"
    path.write_text("\n".join(f"row {i}" for i in range(1, 300)), encoding="utf-8")
    wait_shown(qtbot, viewer, kb_source(path, "A sentence that was deleted since.", "line 200"))
    assert viewer.mode == "text"
    assert "not found" in viewer.note_label.text()
    start, end = viewer.text_range
    assert viewer.text_view.toPlainText()[start:end] == "row 200"


def test_a_docx_source_shows_its_text_at_the_passage(
    qtbot: Any, viewer: SourceViewer, tmp_path: Path
) -> None:
    docx = pytest.importorskip("docx")
    doc = docx.Document()
    doc.add_heading("Chapter 1", 1)
    for i in range(60):
        doc.add_paragraph(f"Paragraph {i} of ordinary prose.")
    doc.add_paragraph("The vault code is written on the blue card.")
    path = tmp_path / "memo.docx"
    doc.save(str(path))
    wait_shown(qtbot, viewer, kb_source(path, "The vault code is written on the blue card.", "paragraph 62"))
    start, end = viewer.text_range
    assert viewer.text_view.toPlainText()[start:end] == "The vault code is written on the blue card."


def test_a_web_source_shows_its_snippet(qtbot: Any, viewer: SourceViewer) -> None:
    src = source_view(2, {"kind": "web", "title": "News", "url": "https://example.org/a", "snippet": "Snip."})
    wait_shown(qtbot, viewer, src)
    assert viewer.mode == "passage" and viewer.passage_view.toPlainText() == "Snip."
    assert viewer.open_button.isEnabled()


# ---- end to end: a real knowledge base, a real answer, a click in the main window --------------------
@needs_cjk
def test_a_source_of_a_real_answer_opens_at_its_page_in_the_main_window(qtbot: Any, manual_pdf: Path) -> None:
    from bubble_desktop.core.settings import KnowledgeSettings
    from tests.e2e.test_kb_service import make_service
    from tests.ui.test_main_window import close_window, make_window, wait_idle

    svc = make_service(KnowledgeSettings())
    w = None
    try:
        svc.create_base("docs")
        assert svc.add_paths("docs", [manual_pdf]).ok
        w = make_window(qtbot)
        w.ctx.chat_service.knowledge = svc
        w.load_configured_model()
        with qtbot.waitSignal(w.model_ready, timeout=5000):
            pass
        w.chat.set_knowledge_bases(["docs"])
        w.chat.kb_menu.actions()[0].setChecked(True)
        w.send("Which marker appears on page three, KW-9047?")
        wait_idle(qtbot, w, timeout=60_000)
        answer = w.chat.view.messages[-1]
        assert answer.role == "assistant" and answer.sources
        cited = next(s for s in answer.sources if s.page == 3)
        assert f"[{cited.number}] manual.pdf · p. 3" in answer.sources_label.text()
        answer.sources_label.linkActivated.emit(f"source:{cited.number}")
        viewer = w.source_viewer()
        qtbot.waitUntil(lambda: viewer.located and viewer.page_info is not None, timeout=TIMEOUT)
        assert viewer.isVisible() and viewer.page == 3
        assert viewer.highlight_rects() and viewer.boxes.coverage > 0.9
    finally:
        if w is not None:
            close_window(w)
        svc.close()
