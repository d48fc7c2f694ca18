"""The Knowledge tab: knowledge bases, their documents, drag & drop indexing and a test search.

All service calls go through ``KnowledgeController`` (worker threads); this widget only shows
state and turns clicks and drops into requests. Files and folders dropped anywhere on the tab are
indexed into the selected knowledge base (one called "default" is created when there is none).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QCoreApplication,
    QItemSelection,
    QItemSelectionModel,
    Qt,
    QUrl,
    Signal,
    Slot,
)
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.i18n import localize
from bubble_desktop.ui.knowledge_controller import KnowledgeController
from bubble_desktop.ui.knowledge_model import PATH_ROLE, DocumentTableModel
from bubble_desktop.ui.source_text import position_text

DEFAULT_BASE = "default"


def format_eta(seconds: float | None) -> str:
    """Seconds as "12 s" / "2 min 05 s" / "3 h 2 min", in the interface language."""
    if seconds is None or seconds < 0:
        return ""

    def tr(text: str) -> str:
        return QCoreApplication.translate("KnowledgeTab", text)

    s = int(round(seconds))
    if s < 60:
        return tr("%1 s").replace("%1", str(s))
    if s < 600:
        return tr("%1 min %2 s").replace("%1", str(s // 60)).replace("%2", f"{s % 60:02d}")
    if s < 3600:
        return tr("%1 min").replace("%1", str(s // 60))
    return tr("%1 h %2 min").replace("%1", str(s // 3600)).replace("%2", str((s % 3600) // 60))


def local_paths(urls: Sequence[QUrl]) -> list[Path]:
    """Local files/folders among dropped URLs, in order, without duplicates."""
    seen: dict[str, Path] = {}
    for url in urls:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            seen.setdefault(str(path), path)
    return list(seen.values())


class KnowledgeTab(QWidget):
    """Manage knowledge bases and their documents. ``shutdown()`` before the app closes the service."""

    bases_changed = Signal(object)  # list[KnowledgeBaseInfo] — the chat pane offers these per chat
    error_shown = Signal(str, str)  # message, hint: also for whoever shows it when the tab is hidden

    def __init__(self, service: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("KnowledgeTab")
        self.setAcceptDrops(True)
        self.controller = KnowledgeController(service, self)
        self._bases: list[Any] = []
        self._current: str | None = None
        self._listed_base: str | None = None  # the base whose documents the table shows
        self._reindex_job: int | None = None  # the job id of the last re-index (another cancel message)
        self._failures: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []  # (path, note) of the last run
        self._viewer: Any = None  # the source viewer a clicked search hit opens in
        self._ingest_started_at = 0.0
        self._ingest_name = ""
        self._last_refresh = 0.0
        self._last_report: Any = None
        self._listed_counts: tuple[int, int] | None = None  # (documents, chunks) of the table's list
        self._build()
        self._connect()
        self._set_busy(False)
        self.controller.refresh_bases()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        self.base_combo = QComboBox()
        self.base_combo.setMinimumWidth(150)
        self.base_combo.setToolTip(self.tr("The knowledge base shown below; files you add go into it."))
        self.new_button = QPushButton(self.tr("New…"))
        self.rename_button = QPushButton(self.tr("Rename…"))
        self.delete_button = QPushButton(self.tr("Delete"))
        self.delete_button.setToolTip(self.tr("Delete this knowledge base and its index (your files stay)."))
        self.base_info = QLabel()
        self.base_info.setProperty("role", "hint")
        # one line that never sets the window's minimum width (a wrapped label's height wobbles and
        # moved the table by a pixel); the whole text is in the tooltip
        self.base_info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        top = QHBoxLayout()
        top.addWidget(QLabel(self.tr("Knowledge base:")))
        top.addWidget(self.base_combo)
        top.addWidget(self.new_button)
        top.addWidget(self.rename_button)
        top.addWidget(self.delete_button)
        top.addStretch(1)

        self.add_files_button = QPushButton(self.tr("Add files…"))
        self.add_files_button.setProperty("primary", True)
        self.add_folder_button = QPushButton(self.tr("Add folder…"))
        self.remove_button = QPushButton(self.tr("Remove selected"))
        self.remove_button.setToolTip(
            self.tr("Take the selected documents out of the index (your files stay).")
        )
        self.reindex_button = QPushButton(self.tr("Re-index"))
        self.reindex_button.setToolTip(
            self.tr("Index every document again, e.g. after changing the embedding model or chunk size.")
        )
        tools = QHBoxLayout()
        tools.addWidget(self.add_files_button)
        tools.addWidget(self.add_folder_button)
        tools.addStretch(1)
        tools.addWidget(self.remove_button)
        tools.addWidget(self.reindex_button)

        self.model = DocumentTableModel(self)  # sorts itself: a proxy sorted through Python callbacks
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, self.model.columnCount()):
            # Sized from the model's texts on each refresh (_fit_columns): ResizeToContents asks every
            # row's size hint through Python, ~100 ms per refresh of 500 documents.
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)

        self._drop_hint_text = self.tr(
            "Drag files or folders anywhere onto this tab to add "
            "them: text, Markdown, PDF, Word, HTML, CSV, JSONL."
        )
        self.drop_hint = QLabel(self._drop_hint_text)
        self.drop_hint.setProperty("role", "hint")
        self.drop_hint.setWordWrap(True)
        self.drop_frame = QFrame()
        self.drop_frame.setProperty("role", "dropzone")
        frame_box = QVBoxLayout(self.drop_frame)
        frame_box.setContentsMargins(6, 6, 6, 6)
        self.empty_label = QLabel(self.tr("Drop files or folders here"))
        self.empty_label.setObjectName("knowledgeEmpty")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setProperty("role", "empty")
        self.table_stack = QStackedWidget()
        self.table_stack.addWidget(self.empty_label)
        self.table_stack.addWidget(self.table)
        frame_box.addWidget(self.table_stack, 1)
        frame_box.addWidget(self.drop_hint)
        self.model.modelReset.connect(self._on_model_reset)

        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.setToolTip(
            self.tr("Stop after the current batch; what is indexed so far is kept.")
        )
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress_bar, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box = QWidget()
        progress_col = QVBoxLayout(self.progress_box)
        progress_col.setContentsMargins(0, 0, 0, 0)
        progress_col.addLayout(progress_row)
        progress_col.addWidget(self.progress_label)
        self.progress_label.setText(" ")  # its line's height is reserved too

        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        # indexed files with something to know (a page OCR found nothing on)
        self.warnings_label = QLabel()
        self.warnings_label.setObjectName("ingestWarnings")
        self.warnings_label.setTextFormat(Qt.TextFormat.RichText)
        # one line of a fixed height (a fallback font's ⚠ is taller): the status area keeps its height
        # and the table its place; every note is in the tooltip and in the Show files… window
        self.warnings_label.setWordWrap(False)
        self.warnings_label.setSizePolicy(
            QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed
        )  # never widens
        self.warnings_label.setFixedHeight(self.warnings_label.fontMetrics().lineSpacing() + 2)
        self.warnings_label.setVisible(False)
        self.error_label = QLabel()
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)
        self.failed_title = QLabel()
        self.failed_title.setProperty("role", "error")
        self.failed_details_button = QPushButton(self.tr("Show files…"))
        self.failed_details_button.clicked.connect(self._on_failed_details_clicked)
        self.failed_list = QListWidget()  # shown in a window of its own (Show files…)
        self.failed_list.setWordWrap(True)
        self.failed_box = QWidget()
        failed_row = QHBoxLayout(self.failed_box)
        failed_row.setContentsMargins(0, 0, 0, 0)
        failed_row.addWidget(self.failed_title, 1)
        failed_row.addWidget(self.failed_details_button)
        self.failed_box.setVisible(False)
        self.failures_window: QWidget | None = None
        results = QWidget()
        results_col = QVBoxLayout(results)
        results_col.setContentsMargins(0, 0, 0, 0)
        results_col.addWidget(self.result_label)
        results_col.addWidget(self.warnings_label)
        results_col.addWidget(self.failed_box)
        results_col.addStretch(1)
        self.results_box = results
        # One place under the table for the progress of a run or the result of the last one; a stack is
        # as tall as its tallest page, so the table never moves or grows when a run starts or ends (a
        # click meant for Cancel landed on a row) and the window keeps fitting in 600 px.
        self.status_stack = QStackedWidget()
        self.status_stack.addWidget(results)
        self.status_stack.addWidget(self.progress_box)
        self.status_stack.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

        left = QWidget()
        left_col = QVBoxLayout(left)
        left_col.setContentsMargins(0, 0, 0, 0)
        left_col.addWidget(self.drop_frame, 1)
        left_col.addWidget(self.status_stack)

        self.search_edit = QLineEdit()
        self.search_edit.setAcceptDrops(False)
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setPlaceholderText(self.tr("Try a question…"))
        self.search_button = QPushButton(self.tr("Search"))
        search_row = QHBoxLayout()
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(self.search_button)
        self.hits_view = QTextBrowser()
        self.hits_view.setObjectName("knowledgeHits")
        self.hits_view.setOpenLinks(False)
        self.hits_view.setAcceptDrops(False)  # drops anywhere go to the tab
        self.hits_view.setPlaceholderText(
            self.tr("See which passages a question finds, and how well they score.")
        )
        self.hits_view.setToolTip(self.tr("Click a source to open its file."))
        self.hits_status = QLabel()
        self.hits_status.setProperty("role", "hint")
        self.hits_status.setWordWrap(True)
        self.hits: list[Any] = []
        search_title = QLabel(self.tr("Test search"))
        search_title.setProperty("role", "subheading")
        search_row.insertWidget(0, search_title)
        right = QWidget()
        right_col = QVBoxLayout(right)
        right_col.setContentsMargins(0, 6, 0, 0)
        right_col.addLayout(search_row)
        right_col.addWidget(self.hits_status)
        right_col.addWidget(self.hits_view, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("knowledgeSplitter")
        self.splitter = splitter
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)

        outer = QVBoxLayout(self)
        outer.addLayout(top)
        outer.addWidget(self.base_info)  # a line of its own: it would set the window's minimum width
        outer.addWidget(self.error_label)
        outer.addLayout(tools)
        outer.addWidget(splitter, 1)

    def _connect(self) -> None:
        c = self.controller
        c.bases_listed.connect(self._on_controller_bases_listed)
        c.documents_listed.connect(self._on_controller_documents_listed)
        c.ingest_started.connect(self._on_controller_ingest_started)
        c.ingest_progress.connect(self._on_controller_ingest_progress)
        c.ingest_finished.connect(self._on_controller_ingest_finished)
        c.search_finished.connect(self._on_controller_search_finished)
        c.base_changed.connect(self._on_controller_base_changed)
        c.failed.connect(self._on_controller_failed)
        self.base_combo.currentIndexChanged.connect(self._on_base_combo_changed)
        self.new_button.clicked.connect(self._on_new_clicked)
        self.rename_button.clicked.connect(self._on_rename_clicked)
        self.delete_button.clicked.connect(self._on_delete_clicked)
        self.add_files_button.clicked.connect(self._on_add_files_clicked)
        self.add_folder_button.clicked.connect(self._on_add_folder_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.reindex_button.clicked.connect(self._on_reindex_clicked)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.search_button.clicked.connect(self._on_search_clicked)
        self.search_edit.returnPressed.connect(self._on_search_clicked)
        self.hits_view.anchorClicked.connect(self._on_hits_view_anchor_clicked)
        self.table.doubleClicked.connect(self._on_table_double_clicked)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)

    # -- public API ----------------------------------------------------------------------------
    @property
    def current_base(self) -> str | None:
        return self._current

    def create_base(self, name: str) -> None:
        name = name.strip()
        if name:
            self._current = name
            # A name the last listing has gets the service's "already exists"; a new one may be made
            # first by files dropped right after (their create-if-missing runs on the ingest thread).
            known = any(b.name == name for b in self._bases)
            self.controller.create_base(name, exist_ok=not known)

    def rename_current_base(self, new_name: str) -> None:
        new_name = new_name.strip()
        if self._current and new_name and new_name != self._current:
            old, self._current = self._current, new_name
            self.controller.rename_base(old, new_name)

    def delete_current_base(self, confirm: bool = True) -> None:
        name = self._current
        if not name:
            return
        question = self.tr("Delete the knowledge base “%1” and its index? Your files are not touched.")
        if confirm and not self._ask(self.tr("Delete knowledge base"), question.replace("%1", name)):
            return
        self._current = None
        self.controller.delete_base(name)

    def _ask(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    def add_paths(self, paths: Sequence[Path | str]) -> None:
        """Index files and folders into the current knowledge base (created when there is none)."""
        if not paths:
            return
        name = self._current or DEFAULT_BASE
        self._current = name
        self.controller.add_paths(name, paths)

    def search(self, query: str) -> None:
        query = query.strip()
        if not query or not self._current:
            return
        self.hits_status.setText(self.tr("Searching…"))
        self.controller.search(self._current, query, top_k=5)

    def shutdown(self) -> bool:
        """Cancel indexing and stop the worker threads (within 2 s). The app closes the service after."""
        if self._viewer is not None:
            self._viewer.shutdown()
        return self.controller.shutdown(2000)

    # -- drag & drop ---------------------------------------------------------------------------
    @staticmethod
    def _accept_as_copy(event: Any) -> bool:
        """Accept a drag of local files as a copy only: indexing reads the files, a "move" would let the
        file manager delete them. False when there is nothing to take or copying is not offered."""
        if not (event.possibleActions() & Qt.DropAction.CopyAction):
            event.ignore()
            return False
        if not (event.mimeData().hasUrls() and local_paths(event.mimeData().urls())):
            event.ignore()
            return False
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._accept_as_copy(event):
            self._set_drop_active(True)

    def dragMoveEvent(self, event: Any) -> None:
        self._accept_as_copy(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_drop_active(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_drop_active(False)
        if not self._accept_as_copy(event):
            return
        self.add_paths(local_paths(event.mimeData().urls()))

    def _set_drop_active(self, active: bool) -> None:
        """Highlight the drop area while files are dragged over the tab, and say where they will go."""
        if active:
            target = self._current or DEFAULT_BASE
            self.drop_hint.setText(self.tr("Release to add them to “%1”.").replace("%1", target))
        else:
            self.drop_hint.setText(self._drop_hint_text)
        for widget in (self.drop_frame, self.drop_hint):
            widget.setProperty("active", active)
            widget.style().unpolish(widget)
            widget.style().polish(widget)

    # -- state ---------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.status_stack.setCurrentWidget(self.progress_box if busy else self.results_box)
        self.cancel_button.setEnabled(busy)
        self.reindex_button.setEnabled(not busy and bool(self._current))
        self.delete_button.setEnabled(not busy and bool(self._current))
        self.rename_button.setEnabled(not busy and bool(self._current))
        self.remove_button.setEnabled(not busy and bool(self.table.selectionModel().selectedRows()))

    def _show_error(self, message: str, hint: str = "") -> None:
        text = message if not hint else f"{message} — {hint}"
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
        if message:
            self.error_shown.emit(message, hint)

    def _update_base_info(self) -> None:
        info = next((b for b in self._bases if b.name == self._current), None)
        if info is None:
            self.base_info.setText(self.tr("No knowledge base yet: drop files here to create one."))
            self.base_info.setToolTip(self.base_info.text())
            return
        documents, chunks = info.documents, info.chunks
        if self._listed_base == self._current and self._listed_counts is not None:
            # the table's list is newer than the bases' summary while a run adds documents
            documents, chunks = self._listed_counts
        text = self.count_text(documents, chunks)
        if info.embedding_model:
            text += " · " + os.path.basename(str(info.embedding_model).rstrip("/\\"))
        backend = {
            "qdrant": self.tr("Qdrant server"),
            "milvus-lite": self.tr("Milvus Lite"),
            "milvus": self.tr("Milvus server"),
        }.get(getattr(info, "backend", "edge"))
        if backend:  # Qdrant Edge, the default, goes unsaid
            text += " · " + backend
        notice = getattr(info, "notice", "")
        if notice:  # a feature this store lacks and what search does instead (e.g. no keyword search)
            text += "\n" + notice
        self.base_info.setText(text)
        self.base_info.setToolTip(text)

    def count_text(self, documents: int, chunks: int) -> str:
        """ "1 document · 12 chunks" in the interface language."""
        docs = (
            self.tr("1 document") if documents == 1 else self.tr("%1 documents").replace("%1", str(documents))
        )
        parts = self.tr("1 chunk") if chunks == 1 else self.tr("%1 chunks").replace("%1", str(chunks))
        return f"{docs} · {parts}"

    # -- controller slots ----------------------------------------------------------------------
    @Slot(object)
    def _on_controller_bases_listed(self, bases: list[Any]) -> None:
        self._bases = list(bases)
        names = [b.name for b in self._bases]
        if self._current not in names:
            self._current = names[0] if names else None
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        self.base_combo.addItems(names)
        if self._current:
            self.base_combo.setCurrentIndex(names.index(self._current))
        self.base_combo.blockSignals(False)
        self._update_base_info()
        self._set_busy(self.controller.busy)
        if self._current:
            self.controller.refresh_documents(self._current)
        else:
            self.model.set_documents([])
        self.bases_changed.emit(list(self._bases))

    @Slot(str, object)
    def _on_controller_documents_listed(self, name: str, documents: list[Any]) -> None:
        if name == self._current:
            self._set_documents_keeping_view(name, documents)
            self._listed_counts = (len(documents), sum(int(d.chunks or 0) for d in documents))
            self._update_base_info()
            self._set_busy(self.controller.busy)

    def _set_documents_keeping_view(self, name: str, documents: list[Any]) -> None:
        """Refresh the table (about once a second while indexing) without losing the user's place:
        the selected documents stay selected and the scroll position stays where it was."""
        same_base = self._listed_base == name
        self._listed_base = name
        selection = self.table.selectionModel()
        selected = (
            {self.model.document(i.row()).path for i in selection.selectedRows()} if same_base else set()
        )
        current = self.table.currentIndex()
        current_path = self.model.document(current.row()).path if same_base and current.isValid() else None
        scroll = self.table.verticalScrollBar().value() if same_base else 0
        self.model.set_documents(documents)
        if selected or current_path:
            rows = [r for r in range(self.model.rowCount()) if self.model.document(r).path in selected]
            keep = QItemSelection()
            for first, last in _runs(rows):
                keep.select(self.model.index(first, 0), self.model.index(last, self.model.columnCount() - 1))
            flags = QItemSelectionModel.SelectionFlag
            selection.select(keep, flags.ClearAndSelect | flags.Rows)
            row = next(
                (r for r in range(self.model.rowCount()) if self.model.document(r).path == current_path), -1
            )
            if row >= 0:
                selection.setCurrentIndex(self.model.index(row, max(current.column(), 0)), flags.NoUpdate)
        self.table.verticalScrollBar().setValue(scroll)

    @Slot(int, str, int)
    def _on_controller_ingest_started(self, _job_id: int, name: str, count: int) -> None:
        self._ingest_started_at = time.monotonic()
        self._ingest_name = name
        self._last_refresh = time.monotonic()
        self._show_error("")
        self.result_label.setText("")
        self._set_failures([])  # the last run's failures are not this run's
        self._set_warnings([])
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        self.progress_label.setText(self.tr("Preparing to index into “%1”…").replace("%1", name))
        self._set_busy(True)

    @Slot(int, object)
    def _on_controller_ingest_progress(self, _job_id: int, p: Any) -> None:
        total = max(1, int(p.files_total))
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(int(p.files_done), total))
        self.progress_bar.setFormat(self.tr("%v of %m files") if total != 1 else self.tr("%v of 1 file"))
        parts = []
        pages_total = int(getattr(p, "pages_total", 0) or 0)
        parsing_file = str(getattr(p, "parsing_file", "") or "")
        if pages_total > 1 and parsing_file:
            parts.append(
                self.tr("Reading %1: page %2 of %3")
                .replace("%1", os.path.basename(parsing_file))
                .replace("%2", str(p.pages_done))
                .replace("%3", str(pages_total))
            )
        if p.current_file:
            parts.append(self.tr("Indexing %1").replace("%1", os.path.basename(p.current_file)))
        parts.append(self.tr("%1 chunks").replace("%1", str(p.chunks_done)))
        if p.chunks_per_s:
            parts.append(self.tr("%1 chunks/s").replace("%1", f"{p.chunks_per_s:.0f}"))
        eta = format_eta(p.eta_s)
        if eta:
            parts.append(self.tr("about %1 left").replace("%1", eta))
        self.progress_label.setText(" · ".join(parts))
        # Show documents as they land, at most once a second (each refresh is a store call).
        now = time.monotonic()
        if self._ingest_name == self._current and p.files_done and now - self._last_refresh > 1.0:
            self._last_refresh = now
            self.controller.refresh_documents(self._ingest_name)

    @Slot(int, str, object)
    def _on_controller_ingest_finished(self, job_id: int, name: str, report: Any) -> None:
        self._last_report = report
        self._set_busy(self.controller.busy)
        if report is not None:
            secs = time.monotonic() - self._ingest_started_at
            summary = self.tr("%1 indexed, %2 unchanged, %3 failed, %4 in %5 s.")
            chunks = (
                self.tr("1 chunk added")
                if report.chunks_added == 1
                else self.tr("%1 chunks added").replace("%1", str(report.chunks_added))
            )
            for key, value in (
                ("%1", len(report.indexed)),
                ("%2", len(report.unchanged)),
                ("%3", len(report.failed)),
                ("%4", chunks),  # a phrase, not a number: '1 chunks added' was shown for one chunk
                ("%5", f"{secs:.1f}"),
            ):
                summary = summary.replace(key, str(value))
            if report.cancelled and job_id == self._reindex_job:
                summary = self.tr("Re-index cancelled — the current index is unchanged.") + " " + summary
            elif report.cancelled:
                summary = self.tr("Cancelled — what was indexed so far is kept.") + " " + summary
            self.result_label.setText(summary)
            self._set_failures([(f.path, f.reason) for f in report.failed])
            self._set_warnings([(w.path, w.reason) for w in getattr(report, "warnings", ())])
        self.controller.refresh_bases()

    @Slot(str, object)
    def _on_controller_search_finished(self, query: str, hits: list[Any]) -> None:
        self.hits = list(hits)
        if not hits:
            self.hits_status.setText(self.tr("Nothing found for “%1”.").replace("%1", query))
            self.hits_view.clear()
            return
        self.hits_status.setText(
            self.tr("Top %1 passages for “%2”:").replace("%1", str(len(hits))).replace("%2", query)
        )
        muted = self.palette().color(self.palette().ColorRole.PlaceholderText).name()
        blocks = []
        for number, hit in enumerate(hits):
            snippet = " ".join(str(hit.text).split())
            if len(snippet) > 300:
                snippet = snippet[:300] + "…"
            where = position_text(hit.position)
            url = f"hit:{number}"
            blocks.append(
                f"<p style='margin:0 0 8px 0'><b>{hit.score:.3f}</b>&nbsp;&nbsp;"
                f"<a href='{html.escape(url, quote=True)}'>{html.escape(os.path.basename(hit.path))}</a>"
                f"<span style='color:{muted}'>{' · ' + html.escape(where) if where else ''}</span><br>"
                f"{html.escape(snippet)}</p>"
            )
        self.hits_view.setHtml("".join(blocks))

    @Slot(str, str)
    def _on_controller_base_changed(self, op: str, name: str) -> None:
        if op == "delete_base" and self._current == name:
            self._current = None
        self.controller.refresh_bases()

    @Slot(str, str, str)
    def _on_controller_failed(self, op: str, message: str, hint: str) -> None:
        self._show_error(message, hint)
        if op == "search":
            self.hits_status.setText("")
        self.controller.refresh_bases()

    def _set_failures(self, failures: list[tuple[str, str]]) -> None:
        self._failures = failures
        self._refresh_results()

    def _set_warnings(self, warnings: list[tuple[str, str]]) -> None:
        """Per-file notes of the last run: "scan.pdf — page 5: no text found, even by OCR"."""
        self.warnings = list(warnings)
        self._refresh_results()

    def _refresh_results(self) -> None:
        """Failures and notes of the last run in the status area's fixed height: with failures, one
        line and "Show files…" (the window lists both); with notes only, the first note on its line
        and all of them in its tooltip."""
        failures = getattr(self, "_failures", [])
        warnings = getattr(self, "warnings", [])
        self.failed_list.clear()
        for path, reason in failures:
            item = QListWidgetItem(f"{os.path.basename(path)} — {localize(reason)}")
            item.setToolTip(path)
            self.failed_list.addItem(item)
        for path, reason in warnings:
            item = QListWidgetItem(f"⚠ {os.path.basename(path)} — {localize(reason)}")
            item.setToolTip(path)
            self.failed_list.addItem(item)
        if len(failures) == 1:
            title = self.tr("1 file could not be indexed:")
        else:
            title = (
                self.tr("%1 files could not be indexed:").replace("%1", str(len(failures)))
                if failures
                else ""
            )
        if failures and warnings:
            title += " " + self.tr("(and %1 notes)").replace("%1", str(len(warnings)))
        self.failed_title.setText(title)
        self.failed_box.setVisible(bool(failures))
        if not failures and self.failures_window is not None:
            self.failures_window.hide()
        lines = [f"⚠ {html.escape(os.path.basename(p))} — {html.escape(localize(r))}" for p, r in warnings]
        if len(lines) > 1:
            lines = [lines[0], html.escape(self.tr("…and %1 more").replace("%1", str(len(lines) - 1)))]
        self.warnings_label.setText(" ".join(lines))
        self.warnings_label.setToolTip("\n".join(f"{p}: {localize(r)}" for p, r in warnings))
        self.warnings_label.setVisible(bool(warnings) and not failures)

    @Slot()
    def _on_failed_details_clicked(self) -> None:
        """The files of the last run that could not be indexed, with the reasons, in a small window."""
        if self.failures_window is None:
            from PySide6.QtWidgets import QDialog, QDialogButtonBox

            window = QDialog(self)
            window.setWindowTitle(self.tr("Files that could not be indexed"))
            window.resize(560, 300)
            column = QVBoxLayout(window)
            column.addWidget(self.failed_list)
            close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
            close.rejected.connect(window.hide)
            column.addWidget(close)
            self.failures_window = window
        self.failures_window.show()
        self.failures_window.raise_()

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of the files the last ingestion could not index."""
        return list(self._failures)

    # -- widget slots --------------------------------------------------------------------------
    @Slot(int)
    def _on_base_combo_changed(self, index: int) -> None:
        name = self.base_combo.itemText(index) if index >= 0 else None
        if name and name != self._current:
            self._current = name
            self._listed_counts = None
            self._update_base_info()
            self.model.set_documents([])
            self.controller.refresh_documents(name)

    @Slot()
    def _on_new_clicked(self) -> None:
        name, ok = QInputDialog.getText(self, self.tr("New knowledge base"), self.tr("Name:"))
        if ok:
            self.create_base(name)

    @Slot()
    def _on_rename_clicked(self) -> None:
        if not self._current:
            return
        name, ok = QInputDialog.getText(
            self, self.tr("Rename knowledge base"), self.tr("New name:"), text=self._current
        )
        if ok:
            self.rename_current_base(name)

    @Slot()
    def _on_delete_clicked(self) -> None:
        self.delete_current_base(confirm=True)

    @Slot()
    def _on_add_files_clicked(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            self.tr("Add files"),
            str(Path.home()),
            self.tr(
                "Documents (*.txt *.md *.markdown *.pdf *.docx "
                "*.html *.htm *.csv *.jsonl *.json);;All files (*)"
            ),
        )
        self.add_paths([Path(f) for f in files])

    @Slot()
    def _on_add_folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Add folder"), str(Path.home()))
        if folder:
            self.add_paths([Path(folder)])

    @Slot()
    def _on_remove_clicked(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        paths = [self.model.data(r, PATH_ROLE) for r in rows]
        if paths and self._current:
            self.controller.remove_documents(self._current, paths)

    @Slot()
    def _on_reindex_clicked(self) -> None:
        self.reindex_current(confirm=True)

    def reindex_current(self, confirm: bool = True) -> None:
        """Rebuild the current base's index (beside the old one: nothing is lost if it is cancelled)."""
        name = self._current
        if not name:
            return
        question = self.tr(
            "Read and embed every document of “%1” again? This can take a while. Search keeps "
            "answering from the current index until the new one is complete; if you cancel, "
            "the current index stays as it is."
        )
        if confirm and not self._ask(self.tr("Re-index knowledge base"), question.replace("%1", name)):
            return
        self._reindex_job = self.controller.reindex(name)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.controller.cancel_ingestion()
        self.progress_label.setText(self.tr("Cancelling after the current batch…"))
        self.cancel_button.setEnabled(False)

    @Slot()
    def _on_search_clicked(self) -> None:
        self.search(self.search_edit.text())

    @Slot(QUrl)
    def _on_hits_view_anchor_clicked(self, url: QUrl) -> None:
        """A hit opens in the in-app viewer at its page or line, the passage highlighted."""
        text = url.toString()
        if not text.startswith("hit:") or not text[4:].isdigit() or int(text[4:]) >= len(self.hits):
            QDesktopServices.openUrl(url)
            return
        from bubble_desktop.ui.source_text import source_view
        from bubble_desktop.ui.source_viewer import SourceViewer

        number = int(text[4:])
        if self._viewer is None:
            self._viewer = SourceViewer(self)
        self._viewer.show_source(source_view(number + 1, self.hits[number]))

    @Slot()
    def _on_table_double_clicked(self, index: Any) -> None:
        path = self.model.data(index, PATH_ROLE)
        if path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    @Slot()
    def _on_model_reset(self) -> None:
        self.table_stack.setCurrentWidget(self.table if self.model.rowCount() else self.empty_label)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Size columns 1.. to their widest text or header, as ResizeToContents would, from the texts."""
        header = self.table.horizontalHeader()
        metrics = self.table.fontMetrics()
        focus = self.table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self.table)
        margin = 2 * (focus + 1)  # the text margins QCommonStyle gives an item view cell
        for col in range(1, self.model.columnCount()):
            widest = max((metrics.horizontalAdvance(t) for t in self.model.column_texts(col)), default=0)
            header.resizeSection(col, max(header.sectionSizeHint(col), widest + margin + 4))

    @Slot()
    def _on_selection_changed(self) -> None:
        self._set_busy(self.controller.busy)


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as (first, last) runs of consecutive rows."""
    runs: list[tuple[int, int]] = []
    for row in sorted(rows):
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs
