"""The in-app source viewer: a cited PDF/image page with the passage highlighted, or a document's text
scrolled to the passage, or the stored passage when the file is gone.

Rendering a page, locating the passage (OCR for scans) and parsing a document run on one worker thread
(a big PDF page takes longer than a frame); results come back as queued signals carrying the request
id, and stale ones are dropped.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRectF, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDesktopServices,
    QImage,
    QKeySequence,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QStackedWidget,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.ui.source_text import (
    TOOLTIP_CHARS,
    SourceView,
    position_text,
    source_label,
    source_location,
    source_tooltip,
)
from bubble_desktop.ui.source_text import excerpt as _excerpt

log = logging.getLogger(__name__)

HIGHLIGHT_FILL = QColor(255, 214, 0, 110)
HIGHLIGHT_EDGE = QColor(230, 140, 0)
ZOOM_STEP = 1.25
ZOOM_RANGE = (0.15, 8.0)  # pixels per PDF point (before the screen's device pixel ratio)


class _Results(QObject):
    """Lives in the GUI thread; the worker emits these, so they arrive queued in the viewer's slots."""

    page_rendered = Signal(int, object, object)  # request id, QImage, PageImage (without pixels)
    passage_located = Signal(int, object)  # document request id, PassageBoxes | None
    text_loaded = Signal(int, object)  # request id, TextPreview
    failed = Signal(int, str)  # request id, message


def _image_from(page: Any) -> QImage:
    img = QImage(page.rgb, page.pixel_width, page.pixel_height, page.stride, QImage.Format.Format_RGB888)
    return img.copy()  # own the pixels: ``page.rgb`` goes away with the worker's frame


class SourceViewer(QWidget):
    """A window showing one source at a time; reused (``show_source``) for every click."""

    shown_source = Signal(object)  # SourceView, once its view is ready (tests, status)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("sourceViewer")
        self.setWindowTitle(self.tr("Source"))
        self.resize(820, 900)
        self.source: SourceView | None = None
        self.mode = ""  # "page", "text", "passage"
        self.page = 1  # the page shown
        self.page_count = 0
        self.cited_page = 0
        self.boxes: Any = None  # PassageBoxes on the cited page, once located
        self.located = False
        self.page_info: Any = None  # PageImage (pixels dropped) of the page shown
        self.text_range: tuple[int, int] = (-1, -1)  # the passage in the text view
        self.zoom_mode = "page"  # "page" (whole page fits), "width", "custom"
        self.zoom = 1.0  # pixels per page unit in custom mode
        self._image: QImage | None = None
        self._request = 0
        self._document = 0  # bumps per source: locate results for an older one are dropped
        self._lock = threading.Lock()
        # two lanes: pages and text on one, passage locating (OCR for scans: seconds) on the other,
        # so turning pages never waits behind OCR
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._last_fit: tuple[Any, ...] = ()
        self._shut_down = False
        self._results = _Results(self)
        self._results.page_rendered.connect(self._on_worker_page_rendered)
        self._results.passage_located.connect(self._on_worker_passage_located)
        self._results.text_loaded.connect(self._on_worker_text_loaded)
        self._results.failed.connect(self._on_worker_failed)
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(120)
        self._refit.timeout.connect(self._on_refit_timeout)
        self._build()

    # ---- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.title_label = QLabel()
        self.title_label.setObjectName("viewerTitle")
        font = self.title_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title_label.setFont(font)
        self.title_label.setWordWrap(True)
        self.open_button = QPushButton(self.tr("Open in system viewer"))
        self.open_button.clicked.connect(self._on_open_clicked)
        head = QHBoxLayout()
        head.addWidget(self.title_label, 1)
        head.addWidget(self.open_button)

        self.path_label = QLabel()
        self.path_label.setObjectName("viewerPath")
        self.path_label.setWordWrap(True)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setStyleSheet("color: gray")
        self.note_label = QLabel()
        self.note_label.setObjectName("viewerNote")
        self.note_label.setWordWrap(True)
        self.note_label.setStyleSheet(
            "QLabel#viewerNote { background: rgba(255, 190, 0, 60); border: 1px solid rgba(230, 140, 0, 160);"
            " border-radius: 4px; padding: 6px; }"
        )
        self.note_label.setVisible(False)

        # pages
        self.prev_button = QToolButton()
        self.prev_button.setText("‹")
        self.prev_button.setToolTip(self.tr("Previous page"))
        self.prev_button.setShortcut(QKeySequence(QKeySequence.StandardKey.MoveToPreviousPage))
        self.prev_button.clicked.connect(self._on_prev_clicked)
        self.next_button = QToolButton()
        self.next_button.setText("›")
        self.next_button.setToolTip(self.tr("Next page"))
        self.next_button.setShortcut(QKeySequence(QKeySequence.StandardKey.MoveToNextPage))
        self.next_button.clicked.connect(self._on_next_clicked)
        self.page_spin = QSpinBox()
        self.page_spin.setMinimum(1)
        self.page_spin.setKeyboardTracking(False)
        self.page_spin.valueChanged.connect(self._on_page_spin_value_changed)
        self.page_total_label = QLabel()
        self.cited_button = QToolButton()
        self.cited_button.setText(self.tr("Cited page"))
        self.cited_button.setToolTip(self.tr("Back to the page the answer cites"))
        self.cited_button.clicked.connect(self._on_cited_clicked)
        self.zoom_out_button = QToolButton()
        self.zoom_out_button.setText("−")
        self.zoom_out_button.setToolTip(self.tr("Zoom out"))
        self.zoom_out_button.setShortcut(QKeySequence(QKeySequence.StandardKey.ZoomOut))
        self.zoom_out_button.clicked.connect(self._on_zoom_out_clicked)
        self.zoom_in_button = QToolButton()
        self.zoom_in_button.setText("+")
        self.zoom_in_button.setToolTip(self.tr("Zoom in"))
        self.zoom_in_button.setShortcut(QKeySequence(QKeySequence.StandardKey.ZoomIn))
        self.zoom_in_button.clicked.connect(self._on_zoom_in_clicked)
        self.fit_page_button = QToolButton()
        self.fit_page_button.setText(self.tr("Fit page"))
        self.fit_page_button.setCheckable(True)
        self.fit_page_button.clicked.connect(self._on_fit_page_clicked)
        self.fit_width_button = QToolButton()
        self.fit_width_button.setText(self.tr("Fit width"))
        self.fit_width_button.setCheckable(True)
        self.fit_width_button.clicked.connect(self._on_fit_width_clicked)
        self.zoom_label = QLabel()
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for w in (
            self.prev_button,
            self.page_spin,
            self.page_total_label,
            self.next_button,
            self.cited_button,
        ):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (
            self.zoom_out_button,
            self.zoom_label,
            self.zoom_in_button,
            self.fit_page_button,
            self.fit_width_button,
        ):
            bar.addWidget(w)
        self.page_label = QLabel()
        self.page_label.setObjectName("viewerPage")
        self.page_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.page_scroll = QScrollArea()
        self.page_scroll.setWidget(self.page_label)
        self.page_scroll.setWidgetResizable(False)
        self.page_scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.page_scroll.setStyleSheet("QScrollArea { background: palette(mid); }")
        page_box = QWidget()
        col = QVBoxLayout(page_box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addLayout(bar)
        col.addWidget(self.page_scroll, 1)
        self.page_box = page_box

        self.text_view = QPlainTextEdit()
        self.text_view.setObjectName("viewerText")
        self.text_view.setReadOnly(True)
        self.passage_view = QPlainTextEdit()
        self.passage_view.setObjectName("viewerPassage")
        self.passage_view.setReadOnly(True)

        self.stack = QStackedWidget()
        self.stack.addWidget(page_box)
        self.stack.addWidget(self.text_view)
        self.stack.addWidget(self.passage_view)

        self.busy_label = QLabel()
        self.busy_label.setStyleSheet("color: gray")

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.path_label)
        layout.addWidget(self.note_label)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.busy_label)

    # ---- public ------------------------------------------------------------------------
    def show_source(self, source: SourceView) -> None:
        """Show ``source``: its page with the passage highlighted, its text at the passage, or the passage."""
        from bubble_desktop.core.kb.preview import preview_kind

        self.source = source
        self._document += 1
        self._request += 1
        self.boxes, self.located, self.page_info, self._image = None, False, None, None
        self.text_range = (-1, -1)
        self._set_note("")
        self.title_label.setText(f"[{source.number}] {source_label(source)}")
        self.setWindowTitle(source_label(source))
        self.path_label.setText(source.target)
        if source.kind == "web":
            self.open_button.setText(self.tr("Open in browser"))
            self.open_button.setEnabled(bool(source.target))
            self._show_passage()
            self.show_and_raise()
            return
        self.open_button.setText(self.tr("Open in system viewer"))
        path = Path(source.target) if source.target else None
        exists = path is not None and path.is_file()
        self.open_button.setEnabled(exists)
        if not exists:
            self._set_note(
                self.tr(
                    "This file is no longer where it was indexed (moved, renamed or deleted). "
                    "Below is the passage as it was stored in the knowledge base; add the file "
                    "again to see it in place."
                )
            )
            self._show_passage()
        elif preview_kind(str(path)) == "page":
            self.mode = "page"
            self.stack.setCurrentWidget(self.page_box)
            self.cited_page = source.page or 1
            self.page = self.cited_page
            self._update_zoom_buttons()
            self.show_and_raise()  # first, so the fit is computed for the laid-out viewport
            self._render()
            self._submit("locate", self._locate_job, self._document, str(path), self.cited_page, source.text)
        elif preview_kind(str(path)) == "text":
            self.mode = "text"
            self.stack.setCurrentWidget(self.text_view)
            self.text_view.setPlainText("")
            self._busy(self.tr("Opening the document…"))
            self._submit("view", self._text_job, self._request, str(path), source.text)
        else:
            self._set_note(self.tr("This kind of file cannot be shown here; the passage is below."))
            self._show_passage()
        self.show_and_raise()

    def show_and_raise(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()

    def go_to_page(self, page: int) -> None:
        if self.mode != "page" or not self.source:
            return
        page = max(1, min(page, self.page_count or page))
        if page != self.page:
            self.page = page
            self._render()

    def highlight_rects(self) -> list[QRectF]:
        """The highlighted boxes on the page shown, in the shown image's logical pixels (tests)."""
        if self.mode != "page" or self.boxes is None or self.page != self.cited_page or not self.page_info:
            return []
        s = self.page_info.scale / self._dpr()
        return [QRectF(x0 * s, y0 * s, (x1 - x0) * s, (y1 - y0) * s) for x0, y0, x1, y1 in self.boxes.boxes]

    def shutdown(self) -> None:
        """Stop the worker (waits for a render in progress; a page takes well under a second)."""
        self._request += 1
        self._document += 1
        self._refit.stop()
        with self._lock:
            self._shut_down = True  # for good: a late resize or click must not start a new worker
            executors, self._executors = list(self._executors.values()), {}
        for ex in executors:
            ex.shutdown(wait=False, cancel_futures=True)
        for ex in executors:
            ex.shutdown(wait=True)

    # ---- worker ------------------------------------------------------------------------
    def _submit(self, lane: str, fn: Any, *args: Any) -> None:
        with self._lock:
            if self._shut_down:
                return
            ex = self._executors.get(lane)
            if ex is None:
                ex = self._executors[lane] = ThreadPoolExecutor(1, thread_name_prefix=f"bubble-viewer-{lane}")
            fut: Future[None] = ex.submit(fn, *args)
        fut.add_done_callback(_log_unexpected)

    def _fit_request(self) -> tuple[Any, ...]:
        dpr = self._dpr()
        vp = self.page_scroll.viewport().size()
        margin = 16
        if self.zoom_mode == "page":
            fit: tuple[float, float] | None = ((vp.width() - margin) * dpr, (vp.height() - margin) * dpr)
        elif self.zoom_mode == "width":
            fit = ((vp.width() - margin - self.page_scroll.verticalScrollBar().sizeHint().width()) * dpr, 0.0)
        else:
            fit = None
        return (self.page, self.zoom * dpr, fit)

    def _render(self) -> None:
        if not self.source:
            return
        self._request += 1
        self._busy(self.tr("Rendering page %1…").replace("%1", str(self.page)))
        self._last_fit = self._fit_request()
        page, scale, fit = self._last_fit
        self._submit("view", self._render_job, self._request, self.source.target, page, scale, fit)

    def _render_job(
        self, rid: int, path: str, page: int, scale: float, fit: tuple[float, float] | None
    ) -> None:
        from bubble_desktop.core.errors import UserFacingError
        from bubble_desktop.core.kb.preview import render_document_page

        if rid != self._request:
            return  # superseded before it started (a resize storm, fast page flipping)
        try:
            if fit is not None:
                fit = (max(fit[0], 50.0), max(fit[1], 50.0) if fit[1] else 0.0)
            rendered = render_document_page(path, page, scale, fit)
            image = _image_from(rendered)
            from dataclasses import replace

            self._emit(self._results.page_rendered, rid, image, replace(rendered, rgb=b""))
        except UserFacingError as exc:
            self._emit(self._results.failed, rid, exc.message)
        except Exception as exc:  # noqa: BLE001 - a hostile file must not kill the worker
            log.exception("rendering %s page %s failed", path, page)
            self._emit(self._results.failed, rid, f"{type(exc).__name__}: {exc}")

    def _locate_job(self, doc: int, path: str, page: int, passage: str) -> None:
        from bubble_desktop.core.kb.locate import locate_passage

        if doc != self._document:
            return
        try:
            boxes = locate_passage(path, page, passage) if passage.strip() else None
        except Exception:  # noqa: BLE001 - no highlight is better than no page
            log.warning("locating the passage in %s failed", path, exc_info=True)
            boxes = None
        self._emit(self._results.passage_located, doc, boxes)

    def _text_job(self, rid: int, path: str, passage: str) -> None:
        from bubble_desktop.core.errors import UserFacingError
        from bubble_desktop.core.kb.preview import text_preview

        try:
            self._emit(self._results.text_loaded, rid, text_preview(path, passage))
        except UserFacingError as exc:
            self._emit(self._results.failed, rid, exc.message)
        except Exception as exc:  # noqa: BLE001
            log.exception("reading %s for the viewer failed", path)
            self._emit(self._results.failed, rid, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _emit(signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the viewer was deleted while the job ran
            pass

    # ---- results (GUI thread) ----------------------------------------------------------
    @Slot(int, object, object)
    def _on_worker_page_rendered(self, rid: int, image: QImage, info: Any) -> None:
        if rid != self._request or self.mode != "page":
            return
        self._image, self.page_info = image, info
        self.page, self.page_count = info.page, info.page_count
        self.page_spin.blockSignals(True)
        self.page_spin.setMaximum(max(1, info.page_count))
        self.page_spin.setValue(info.page)
        self.page_spin.blockSignals(False)
        self.page_total_label.setText(self.tr("of %1").replace("%1", str(info.page_count)))
        self.prev_button.setEnabled(info.page > 1)
        self.next_button.setEnabled(info.page < info.page_count)
        self.cited_button.setEnabled(info.page != self.cited_page)
        self.zoom = info.scale / self._dpr()
        self.zoom_label.setText(f"{round(self.zoom * 72 / 96 * 100)} %")  # 100 % = the page's real size
        self._paint_page()
        if self.located or info.page != self.cited_page:
            self._busy("")
        else:
            self._busy(self.tr("Finding the passage on the page…"))
        self._scroll_to_highlight()
        self.shown_source.emit(self.source)

    @Slot(int, object)
    def _on_worker_passage_located(self, doc: int, boxes: Any) -> None:
        if doc != self._document or self.mode != "page":
            return
        self.located, self.boxes = True, boxes
        if self._image is not None:
            self._busy("")
        if boxes is None:
            self._set_note(
                self.tr(
                    "The passage could not be found on page %1 (the file may have changed since it was "
                    "indexed); the page is shown without a highlight. The passage reads: %2"
                )
                .replace("%1", str(self.cited_page))
                .replace("%2", _excerpt(self.source.text if self.source else "", 400))
            )
        self._paint_page()
        self._scroll_to_highlight()

    @Slot(int, object)
    def _on_worker_text_loaded(self, rid: int, preview: Any) -> None:
        from bubble_desktop.core.kb.preview import line_offset

        if rid != self._request or self.mode != "text" or self.source is None:
            return
        self._busy("")
        self.text_view.setPlainText(preview.text)
        start, end = preview.start, preview.end
        if start < 0:
            unit, _, number = self.source.position.partition(" ")
            if preview.raw and unit == "line" and number.isdigit():
                start = line_offset(preview.text, int(number))
                nl = preview.text.find("\n", start)
                end = len(preview.text) if nl < 0 else nl
                self._set_note(
                    self.tr(
                        "The passage was not found in the file as it is now (changed since it was "
                        "indexed?); showing %1, where it was."
                    ).replace("%1", position_text(self.source.position))
                )
            else:
                self._set_note(
                    self.tr(
                        "The passage was not found in the file as it is now (changed since it was indexed?). "
                        "It reads: %1"
                    ).replace("%1", _excerpt(self.source.text, 400))
                )
        self.text_range = (start, end)
        if start >= 0:
            fmt = QTextCharFormat()
            fmt.setBackground(QBrush(QColor(255, 214, 0, 200)))
            fmt.setForeground(QBrush(QColor(0, 0, 0)))
            sel = QTextEdit.ExtraSelection()
            cursor = QTextCursor(self.text_view.document())
            cursor.setPosition(start)
            cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
            sel.cursor = cursor
            sel.format = fmt
            self.text_view.setExtraSelections([sel])
            # the end first, then the start: the passage's first line lands in view, centred
            at = QTextCursor(self.text_view.document())
            at.setPosition(end)
            self.text_view.setTextCursor(at)
            at.setPosition(start)
            self.text_view.setTextCursor(at)
            self.text_view.centerCursor()
        self.shown_source.emit(self.source)

    @Slot(int, str)
    def _on_worker_failed(self, rid: int, message: str) -> None:
        if rid != self._request or self.source is None:
            return
        self._busy("")
        self._set_note(
            self.tr("This file cannot be shown here: %1. The passage is below.").replace("%1", message)
        )
        self._show_passage()
        self.shown_source.emit(self.source)

    # ---- drawing -----------------------------------------------------------------------
    def _dpr(self) -> float:
        return float(self.devicePixelRatioF()) or 1.0

    def _paint_page(self) -> None:
        if self._image is None:
            return
        image = self._image.copy()
        if self.page == self.cited_page and self.boxes is not None and self.page_info is not None:
            s = self.page_info.scale
            painter = QPainter(image)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(HIGHLIGHT_EDGE, max(1.0, 1.5 * self._dpr())))
            painter.setBrush(QBrush(HIGHLIGHT_FILL))
            pad = 2.0 * self._dpr()
            for x0, y0, x1, y1 in self.boxes.boxes:
                painter.drawRoundedRect(
                    QRectF(x0 * s - pad, y0 * s - pad, (x1 - x0) * s + 2 * pad, (y1 - y0) * s + 2 * pad), 3, 3
                )
            painter.end()
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(self._dpr())
        self.page_label.setPixmap(pixmap)
        self.page_label.resize(pixmap.deviceIndependentSize().toSize())

    def _scroll_to_highlight(self) -> None:
        rects = self.highlight_rects()
        if not rects:
            return
        first = rects[0]
        for r in rects[1:]:
            first = first.united(r)
        centre = first.center().toPoint()
        self.page_scroll.ensureVisible(centre.x(), centre.y(), 40, int(first.height() / 2) + 40)

    def grab_page(self) -> QImage:
        """The page as drawn (with its highlight), in device pixels (tests)."""
        pm = self.page_label.pixmap()
        return pm.toImage() if pm is not None else QImage()

    # ---- helpers -----------------------------------------------------------------------
    def _show_passage(self) -> None:
        self.mode = "passage"
        assert self.source is not None
        self.passage_view.setPlainText(self.source.text or self.tr("(no passage stored)"))
        self.stack.setCurrentWidget(self.passage_view)
        self._busy("")
        self.shown_source.emit(self.source)

    def _set_note(self, text: str) -> None:
        self.note_label.setText(text)
        self.note_label.setVisible(bool(text))

    def _busy(self, text: str) -> None:
        self.busy_label.setText(text)

    def _update_zoom_buttons(self) -> None:
        self.fit_page_button.setChecked(self.zoom_mode == "page")
        self.fit_width_button.setChecked(self.zoom_mode == "width")

    def _set_zoom(self, mode: str, zoom: float | None = None) -> None:
        self.zoom_mode = mode
        if zoom is not None:
            self.zoom = min(max(zoom, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        self._update_zoom_buttons()
        self._render()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.mode == "page" and self.zoom_mode != "custom":
            self._refit.start()

    def closeEvent(self, event: Any) -> None:  # noqa: N802
        self._request += 1  # a render in flight is dropped; the window is reused on the next click
        super().closeEvent(event)

    # ---- slots -------------------------------------------------------------------------
    @Slot()
    def _on_refit_timeout(self) -> None:
        # the resize that comes with showing the window changes nothing: no second render
        if self.mode == "page" and self.isVisible() and self._fit_request() != self._last_fit:
            self._render()

    @Slot()
    def _on_prev_clicked(self) -> None:
        self.go_to_page(self.page - 1)

    @Slot()
    def _on_next_clicked(self) -> None:
        self.go_to_page(self.page + 1)

    @Slot()
    def _on_cited_clicked(self) -> None:
        self.go_to_page(self.cited_page)

    @Slot(int)
    def _on_page_spin_value_changed(self, value: int) -> None:
        self.go_to_page(value)

    @Slot()
    def _on_zoom_in_clicked(self) -> None:
        self._set_zoom("custom", self.zoom * ZOOM_STEP)

    @Slot()
    def _on_zoom_out_clicked(self) -> None:
        self._set_zoom("custom", self.zoom / ZOOM_STEP)

    @Slot()
    def _on_fit_page_clicked(self) -> None:
        self._set_zoom("page")

    @Slot()
    def _on_fit_width_clicked(self) -> None:
        self._set_zoom("width")

    @Slot()
    def _on_open_clicked(self) -> None:
        if self.source is None or not self.source.target:
            return
        url = (
            QUrl(self.source.target) if self.source.kind == "web" else QUrl.fromLocalFile(self.source.target)
        )
        if not QDesktopServices.openUrl(url):
            self._set_note(
                self.tr("No application on this computer opens this kind of file; it is shown here instead.")
                if self.source.kind != "web"
                else self.tr("No web browser could be started.")
            )


def _log_unexpected(fut: Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("source viewer job failed", exc_info=fut.exception())


__all__ = ["TOOLTIP_CHARS", "SourceViewer", "source_label", "source_location", "source_tooltip"]
