"""Knowledge tab through the REAL KnowledgeService (MiniLM + a Qdrant Edge shard under tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings
from bubble_desktop.ui.knowledge_tab import KnowledgeTab, format_eta

TIMEOUT = 120_000  # generous: CI machines are slow and shared


@pytest.fixture(scope="module")
def embedder(minilm_dir):
    """One loaded MiniLM for the module (loading it per test costs seconds)."""
    from bubble_desktop.core.kb.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(str(minilm_dir))


@pytest.fixture
def service(bubble_home, minilm_dir, embedder):
    settings = KnowledgeSettings(embedding_model=str(minilm_dir))
    svc = KnowledgeService(Paths.under(bubble_home).ensure(), settings, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture
def tab(qtbot, service):
    widget = KnowledgeTab(service)
    qtbot.addWidget(widget)
    widget.resize(1000, 650)
    widget.show()
    yield widget
    assert widget.shutdown()


def drop(widget, paths: list[Path]) -> None:
    """What a real drag from a file manager delivers: a drag-enter then a drop with file URLs."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(pos, Qt.DropAction.CopyAction, mime, buttons, mods))


def test_drop_files_and_folder_indexes_them_and_lists_failures(qtbot, tab, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "paris.txt").write_text(
        "Paris is the capital of France. It lies on the Seine.\n", encoding="utf-8"
    )
    (docs / "sub" / "rivers.md").write_text("# Rivers\n\nThe Yangtze is the longest river in Asia.\n")
    (docs / "sub" / "beijing.txt").write_text("北京是中国的首都。\n", encoding="utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 this is not really a pdf")
    drop(tab, [docs, broken])
    qtbot.waitUntil(lambda: tab._last_report is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: tab.model.rowCount() >= 3, timeout=TIMEOUT)
    names = {Path(d.path).name for d in tab.model.documents() if d.status == "indexed"}
    assert {"paris.txt", "rivers.md", "beijing.txt"} <= names
    # the combo fills when the bases are listed again after the run; the table may be listed first
    qtbot.waitUntil(lambda: tab.base_combo.currentText() == "default", timeout=TIMEOUT)
    assert tab.current_base == "default" and tab.base_combo.currentText() == "default"
    assert [Path(p).name for p, _ in tab.failures] == ["broken.pdf"]
    assert tab.failures[0][1] and not tab.failed_box.isHidden()
    assert tab.progress_box.isHidden()
    # the table shows readable cells
    row = next(i for i in range(tab.model.rowCount()) if tab.model.document(i).path.endswith("paris.txt"))
    assert tab.model.index(row, 1).data() == "Text"
    assert int(tab.model.index(row, 2).data()) >= 1
    assert tab.model.index(row, 3).data().endswith("B")

    # test search shows hits with scores and sources
    tab.search_edit.setText("capital of France")
    tab.search_button.click()
    qtbot.waitUntil(lambda: len(tab.hits) > 0, timeout=TIMEOUT)
    assert tab.hits[0].path.endswith("paris.txt")
    assert (
        "paris.txt" in tab.hits_view.toPlainText()
        and f"{tab.hits[0].score:.3f}" in tab.hits_view.toPlainText()
    )

    # remove the selected document
    tab.table.selectRow(row)  # the view shows the model itself (it sorts itself)
    assert tab.remove_button.isEnabled()
    tab.remove_button.click()
    qtbot.waitUntil(
        lambda: all(not d.path.endswith("paris.txt") for d in tab.model.documents()), timeout=TIMEOUT
    )

    # re-index rebuilds the remaining documents, after asking first
    assert tab.reindex_button.isEnabled()
    asked: list[str] = []

    def question(parent, title, text, *args):  # noqa: ANN001, ANN002
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT):
        tab.reindex_button.click()
    assert len(asked) == 1 and "cancel" in asked[0]
    assert tab._last_report is not None, tab.error_label.text()
    assert {Path(p).name for p in tab._last_report.indexed} >= {"rivers.md", "beijing.txt"}
    qtbot.waitUntil(
        lambda: all(d.status == "indexed" for d in tab.model.documents() if d.path.endswith(".md")),
        timeout=TIMEOUT,
    )


def test_cancel_stops_ingestion_and_keeps_what_was_done(qtbot, tab, service, tmp_path):
    service.batch_chunks = 16  # first progress (and each cancel point) comes sooner
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):
        text = " ".join(f"Document {i} sentence {j} about topic {i * j % 17}." for j in range(100))
        (folder / f"doc{i:03}.txt").write_text(text, encoding="utf-8")
    with qtbot.waitSignal(tab.controller.ingest_progress, timeout=TIMEOUT):
        drop(tab, [folder])
    assert not tab.progress_box.isHidden() and tab.cancel_button.isEnabled()
    tab.cancel_button.click()
    qtbot.waitUntil(lambda: tab._last_report is not None, timeout=TIMEOUT)
    assert tab._last_report.cancelled
    assert len(tab._last_report.indexed) < 60
    assert tab.progress_box.isHidden()
    assert "Cancelled" in tab.result_label.text()


def test_cancelled_reindex_says_the_index_is_unchanged_and_it_is(qtbot, tab, service, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(12):
        text = " ".join(f"Document {i} sentence {j} about topic {i * j % 17}." for j in range(40))
        (folder / f"doc{i:03}.txt").write_text(text, encoding="utf-8")
    with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT):
        drop(tab, [folder])
    qtbot.waitUntil(lambda: tab._current is not None, timeout=TIMEOUT)
    name = tab._current
    before = [(d.path, d.status, d.chunks) for d in service.documents(name)]
    assert len(before) == 12
    service.batch_chunks = 4  # many cancel points
    tab._last_report = None
    with qtbot.waitSignal(tab.controller.ingest_progress, timeout=TIMEOUT):
        tab.reindex_current(confirm=False)
    tab.cancel_button.click()
    qtbot.waitUntil(lambda: tab._last_report is not None, timeout=TIMEOUT)
    assert tab._last_report.cancelled
    assert "Re-index cancelled" in tab.result_label.text()
    assert [(d.path, d.status, d.chunks) for d in service.documents(name)] == before


def test_bases_create_rename_delete(qtbot, tab):
    tab.create_base("notes")
    qtbot.waitUntil(lambda: tab.base_combo.findText("notes") >= 0, timeout=TIMEOUT)
    tab.rename_current_base("journal")
    qtbot.waitUntil(lambda: tab.base_combo.findText("journal") >= 0, timeout=TIMEOUT)
    assert tab.base_combo.findText("notes") < 0
    tab.delete_current_base(confirm=False)
    qtbot.waitUntil(lambda: tab.base_combo.count() == 0, timeout=TIMEOUT)
    # a bad name is reported inline, not raised
    tab.create_base("x" * 1000)
    qtbot.waitUntil(lambda: not tab.error_label.isHidden(), timeout=TIMEOUT)


def test_shutdown_while_indexing_returns_within_two_seconds(qtbot, service, tmp_path):
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"d{i}.txt").write_text(" ".join(f"Line {j} of file {i}." for j in range(200)))
    service.batch_chunks = 16
    widget = KnowledgeTab(service)
    qtbot.addWidget(widget)
    with qtbot.waitSignal(widget.controller.ingest_progress, timeout=TIMEOUT):
        widget.add_paths([folder])
    start = time.monotonic()
    assert widget.shutdown()
    assert time.monotonic() - start < 2.0


def test_format_eta():
    assert format_eta(None) == ""
    assert format_eta(12.4) == "12 s"
    assert format_eta(125) == "2 min 05 s"
    assert format_eta(3 * 3600 + 120) == "3 h 2 min"


def test_drag_of_web_links_is_refused(tab):
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/page.html")])
    enter = QDragEnterEvent(
        tab.rect().center(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(tab, enter)
    assert not enter.isAccepted()
    assert not tab.controller.busy


def test_no_child_widget_swallows_file_drops(tab):
    """Drops must reach the tab from anywhere on it: no child may accept them itself."""
    from PySide6.QtWidgets import QWidget

    takers = [w.objectName() or type(w).__name__ for w in tab.findChildren(QWidget) if w.acceptDrops()]
    assert takers == []


def test_table_sorts_by_header_and_selection_follows_its_row(qtbot):
    """The model sorts itself (no proxy): a header click re-sorts, the selected document stays selected."""
    from PySide6.QtWidgets import QTableView

    from bubble_desktop.core.kb.types import DocumentInfo
    from bubble_desktop.ui.knowledge_model import PATH_ROLE, DocumentTableModel

    model = DocumentTableModel()
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.setSortingEnabled(True)
    view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    docs = [
        DocumentInfo(f"id{i}", f"/d/{name}", "text", chunks, 100 * chunks, 1.7e9 + i, "indexed")
        for i, (name, chunks) in enumerate([("b.txt", 3), ("a.txt", 10), ("c.txt", 1)])
    ]
    model.set_documents(docs)
    assert [model.index(r, 0).data() for r in range(3)] == ["a.txt", "b.txt", "c.txt"]
    assert model.index(0, 2).data() == "10" and model.index(0, 3).data() == "1000 B"
    view.selectRow(2)  # c.txt
    view.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # chunks, most first
    assert [model.document(r).chunks for r in range(3)] == [10, 3, 1]
    selected = [model.data(i, PATH_ROLE) for i in view.selectionModel().selectedRows()]
    assert selected == ["/d/c.txt"]
    model.set_documents(list(reversed(docs)))  # a refresh keeps the chosen sort
    assert [model.document(r).chunks for r in range(3)] == [10, 3, 1]


def test_refresh_while_indexing_keeps_selection_and_scroll(qtbot, tab):
    """The table is refreshed about once a second during an ingestion: the user's selection, current
    row and scroll position survive it (a model reset alone would drop them)."""
    from bubble_desktop.core.kb.types import DocumentInfo

    def docs(n: int) -> list[DocumentInfo]:
        return [DocumentInfo(f"id{i}", f"/d/file{i:03}.txt", "txt", 1, 10, 0.0, "indexed") for i in range(n)]

    name = tab._current or "notes"
    tab._current = name
    tab._on_controller_documents_listed(name, docs(200))
    table = tab.table
    table.selectRow(120)
    flags = table.selectionModel().SelectionFlag
    table.selectionModel().select(tab.model.index(122, 0), flags.Select | flags.Rows)
    table.scrollTo(tab.model.index(120, 0))
    scroll = table.verticalScrollBar().value()
    assert scroll > 0
    tab._on_controller_documents_listed(name, docs(230))  # 30 more indexed meanwhile
    paths = sorted(tab.model.document(i.row()).path for i in table.selectionModel().selectedRows())
    assert paths == ["/d/file120.txt", "/d/file122.txt"]
    assert tab.model.document(table.currentIndex().row()).path == "/d/file120.txt"
    assert table.verticalScrollBar().value() == scroll
    tab._current = "another base"  # the user switched bases: that table starts fresh
    tab._on_controller_documents_listed("another base", docs(150))
    assert not table.selectionModel().selectedRows() and table.verticalScrollBar().value() == 0


def test_one_failed_file_is_not_called_files(tab):
    """'1 files could not be indexed' read wrong (issue 16, item 14)."""
    tab._set_failures([("/x/broken.pdf", "the PDF is damaged")])
    assert tab.failed_title.text() == "1 file could not be indexed:"
    tab._set_failures([("/x/a.pdf", "damaged"), ("/x/b.pdf", "damaged")])
    assert tab.failed_title.text() == "2 files could not be indexed:"


def test_one_chunk_is_not_called_chunks(qtbot, tab, tmp_path):
    """'1 indexed, 0 unchanged, 0 failed, 1 chunks added in 6.0 s.' was seen in a real window."""
    import re

    for n in (1, 2):
        docs = tmp_path / f"docs{n}"
        docs.mkdir()
        for i in range(n):
            (docs / f"note{i}.txt").write_text(f"Short note {i} about the harbour.\n", encoding="utf-8")
        tab._last_report = None
        with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT):
            tab.add_paths([docs])
        qtbot.waitUntil(lambda: tab._last_report is not None, timeout=TIMEOUT)
        added = "1 chunk added" if n == 1 else "2 chunks added"
        pattern = rf"{n} indexed, 0 unchanged, 0 failed, {added} in \d+\.\d s\."
        assert re.fullmatch(pattern, tab.result_label.text()), tab.result_label.text()


def test_files_dropped_right_after_new_base_are_indexed(qtbot, tab, tmp_path):
    """The "New" button runs on the query thread, a drop's create-if-missing on the ingest thread; the
    second used to see no base, then fail with "already exists" when the first had made it meanwhile
    (CI, stop 20)."""
    errors: list[str] = []
    tab.controller.failed.connect(lambda _op, msg, _hint: errors.append(msg))
    for i in range(6):
        doc = tmp_path / f"note{i}.txt"
        doc.write_text(f"Note number {i} is about the lighthouse keeper.\n", encoding="utf-8")
        tab.create_base(f"fresh{i}")
        with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT) as blocker:
            tab.add_paths([doc])
        assert blocker.args[2] is not None and blocker.args[2].indexed == (str(doc),), errors
        assert not errors


def test_pages_are_shown_while_a_pdf_is_read_and_a_blank_page_is_reported(qtbot, tab, tmp_path):
    """Per-page progress during a long PDF (OCR included) and the per-file notes after the run."""
    from tests.e2e import doc_fixtures as F

    if F.cjk_font() is None:
        pytest.skip("no CJK font on this machine")
    pages = [F.PAGES[0], [], F.PAGES[2], F.PAGES[1]]  # page 2 blank: no text layer, nothing to OCR
    pdf = F.text_pdf(tmp_path / "gappy.pdf", pages=pages, header=False)
    tab.create_base("scans")
    qtbot.waitUntil(lambda: tab.current_base == "scans", timeout=TIMEOUT)
    seen: list[str] = []
    tab.controller.ingest_progress.connect(lambda *_: seen.append(tab.progress_label.text()))
    with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT):
        tab.add_paths([pdf])
    assert any("Reading gappy.pdf: page " in t and " of 4" in t for t in seen), seen
    assert tab._last_report.indexed and not tab._last_report.failed
    assert tab.warnings == [(str(pdf), "page 2: no text found, even by OCR")]
    assert tab.warnings_label.isVisible()
    assert "gappy.pdf — page 2: no text found, even by OCR" in tab.warnings_label.text()


def test_a_search_hit_opens_in_the_viewer_at_its_passage(qtbot, tab, tmp_path):
    lines = [f"Filler line {i} about nothing in particular." for i in range(1, 301)]
    lines[249] = "The observatory dome opens only when the humidity is below sixty percent."
    notes = tmp_path / "observatory.txt"
    notes.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with qtbot.waitSignal(tab.controller.ingest_finished, timeout=TIMEOUT):
        tab.add_paths([notes])
    assert tab._last_report.indexed, tab.error_label.text()
    # the listing asked for when the tab opened may land after add_paths and clear the current base;
    # the listing after the run sets it again
    qtbot.waitUntil(lambda: tab.current_base == "default" and tab.model.rowCount() == 1, timeout=TIMEOUT)
    tab.search_edit.setText("when does the observatory dome open humidity")
    answered: list[object] = []
    tab.controller.search_finished.connect(lambda *a: answered.append(a))
    tab.controller.failed.connect(lambda *a: answered.append(a))
    tab.search_button.click()
    qtbot.waitUntil(lambda: bool(answered), timeout=TIMEOUT)
    assert tab.hits, (tab.error_label.text(), tab.hits_status.text(), tab.current_base)
    assert "observatory dome" in tab.hits[0].text
    tab.hits_view.anchorClicked.emit(QUrl("hit:0"))
    viewer = tab._viewer
    qtbot.waitUntil(lambda: viewer.text_range[0] >= 0, timeout=TIMEOUT)
    assert viewer.isVisible() and viewer.mode == "text"
    start, end = viewer.text_range
    assert "The observatory dome opens only when" in viewer.text_view.toPlainText()[start:end]
    assert viewer.title_label.text().startswith("[1] observatory.txt · ")


def test_base_info_names_a_milvus_backend_and_its_notice(qtbot, tab):
    from bubble_desktop.core.kb.types import KnowledgeBaseInfo

    notice = "This Milvus has no BM25 full-text function: this knowledge base is searched by meaning only."
    tab._on_controller_bases_listed(
        [KnowledgeBaseInfo("remote", 3, 9, "all-MiniLM-L6-v2", 384, 0.0, "milvus", "http://m:19530", notice)]
    )
    text = tab.base_info.text()
    assert "3 documents · 9 chunks" in text and "Milvus server" in text and notice in text
    tab._on_controller_bases_listed([KnowledgeBaseInfo("local", 1, 2, "all-MiniLM-L6-v2", 384, 0.0)])
    assert "Milvus" not in tab.base_info.text() and "Qdrant" not in tab.base_info.text()
