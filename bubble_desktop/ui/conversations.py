"""The sidebar of saved conversations: new, rename, delete, search.

It reads the ConversationStore (SQLite, fast, safe from any thread) directly; nothing here blocks
for long. Search looks into titles and message text (the store's full-text index).
A conversation whose answer is still being written (in the background, after the user switched
chats) shows a turning spinner; one waiting for the model a still clock.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QPointF, QRectF, QStandardPaths, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = Qt.ItemDataRole.UserRole
STATE_ROLE = Qt.ItemDataRole.UserRole + 1  # "answering" / "waiting" / None
SPINNER_FRAMES = 12
SPINNER_INTERVAL_MS = 90


class ConversationsSidebar(QWidget):
    """Lists conversations, newest first; says which one the user picked."""

    conversation_selected = Signal(object)  # conversation id (int) or None for a new chat
    conversation_deleted = Signal(object)
    conversation_renamed = Signal(object, str)

    def __init__(self, store: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conversationsSidebar")
        self.setMinimumWidth(220)
        self._store = store
        self._current: int | None = None
        self._answering: dict[int, str] = {}  # conversation id -> "answering" / "waiting"
        self._frame = 0
        self._frames: list[QIcon] = []
        self._waiting_icon: QIcon | None = None
        self._spin = QTimer(self)
        self._spin.setInterval(SPINNER_INTERVAL_MS)
        self._spin.timeout.connect(self._on_spin_timeout)

        self.new_button = QPushButton(self.tr("New chat"))
        self.new_button.setObjectName("newChatButton")
        self.new_button.setToolTip(self.tr("Start a new conversation (Ctrl+N)"))
        self.new_button.clicked.connect(self._on_new_button_clicked)
        self.search = QLineEdit()
        self.search.setObjectName("conversationSearch")
        self.search.setPlaceholderText(self.tr("Search conversations"))
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search_text_changed)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Long titles end in "…" (full title in the tooltip) instead of a horizontal scroll bar.
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_list_context_menu_requested)
        self.list.itemClicked.connect(self._on_list_item_clicked)
        self.list.itemActivated.connect(self._on_list_item_clicked)
        self.rename_button = QPushButton(self.tr("Rename"))
        self.rename_button.clicked.connect(self._on_rename_button_clicked)
        self.delete_button = QPushButton(self.tr("Delete"))
        self.delete_button.clicked.connect(self._on_delete_button_clicked)

        row = QHBoxLayout()
        row.addWidget(self.rename_button)
        row.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        self.refresh()

    # ---- content -------------------------------------------------------------------------
    @property
    def current_id(self) -> int | None:
        return self._current

    def refresh(self) -> None:
        """Reload the list (after an answer was saved, a rename, a delete...)."""
        query = self.search.text().strip()
        self.list.blockSignals(True)
        self.list.clear()
        try:
            if query:
                seen: set[int] = set()
                rows: list[tuple[int, str, str]] = []
                for conv in self._store.list_conversations():
                    if query.lower() in conv.title.lower():
                        seen.add(conv.id)
                        rows.append((conv.id, conv.title, _when(conv.updated_at)))
                for hit in self._store.search(query):
                    if hit.conversation_id not in seen:
                        seen.add(hit.conversation_id)
                        rows.append((hit.conversation_id, hit.title, hit.snippet))
            else:
                rows = [(c.id, c.title, _when(c.updated_at)) for c in self._store.list_conversations()]
        except Exception:  # a broken database must not take the window down; the store logs it
            rows = []
        for cid, title, detail in rows:
            item = QListWidgetItem(title or self.tr("Untitled"))
            item.setData(ID_ROLE, cid)
            item.setToolTip(f"{title}\n{detail}" if detail else title)
            self._decorate(item)
            self.list.addItem(item)
            if cid == self._current:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.rename_button.setEnabled(self._current is not None)
        self.delete_button.setEnabled(self._current is not None)

    def set_current(self, conversation_id: int | None) -> None:
        """Mark a conversation as the open one (no signal)."""
        self._current = conversation_id
        self.refresh()

    def ids(self) -> list[int]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    # ---- answers in progress -------------------------------------------------------------
    def set_answering(self, states: Mapping[int, str]) -> None:
        """Mark conversations whose answer is being written ("answering") or waits ("waiting")."""
        states = dict(states)
        if states == self._answering:
            return
        known = set(self.ids())
        self._answering = states
        if not set(states) <= known:
            self.refresh()  # a new chat got saved while it was answered
        else:
            for i in range(self.list.count()):
                self._decorate(self.list.item(i))
        if "answering" in states.values():
            self._spin.start()
        else:
            self._spin.stop()

    def answering_state(self, conversation_id: int) -> str | None:
        return self._answering.get(conversation_id)

    def _decorate(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        state = self._answering.get(cid)
        tip = item.toolTip().split("\n\n", 1)[0]
        if state == "answering":
            item.setIcon(self._spinner_icon(self._frame))
            item.setToolTip(tip + "\n\n" + self.tr("Answering…"))
        elif state == "waiting":
            item.setIcon(self._clock_icon())
            item.setToolTip(tip + "\n\n" + self.tr("Waiting for the model (another chat is being answered)"))
        else:
            item.setIcon(QIcon())
            item.setToolTip(tip)
        item.setData(STATE_ROLE, state)

    @Slot()
    def _on_spin_timeout(self) -> None:
        self._frame = (self._frame + 1) % SPINNER_FRAMES
        icon = self._spinner_icon(self._frame)
        for i in range(self.list.count()):
            item = self.list.item(i)
            if self._answering.get(item.data(ID_ROLE)) == "answering":
                item.setIcon(icon)

    def _icon_size(self) -> int:
        return max(12, self.list.fontMetrics().height() - 2)

    def _spinner_icon(self, frame: int) -> QIcon:
        if not self._frames:
            self._frames = [
                self._icon(self.palette().highlight().color(), start=-i * 360 // SPINNER_FRAMES)
                for i in range(SPINNER_FRAMES)
            ]
        return self._frames[frame % SPINNER_FRAMES]

    def _clock_icon(self) -> QIcon:
        if self._waiting_icon is None:
            self._waiting_icon = self._icon(QColor("#8a8f98"), start=None)
        return self._waiting_icon

    def _icon(self, colour: QColor, start: int | None) -> QIcon:
        """The marker in ``colour``, and in the highlighted-text colour on the selected row."""
        icon = QIcon(self._paint(colour, start))
        icon.addPixmap(self._paint(self.palette().highlightedText().color(), start), QIcon.Mode.Selected)
        return icon

    def _paint(self, colour: QColor, start: int | None) -> QPixmap:
        """A spinner frame (an arc starting at ``start`` degrees) or, with None, a small clock."""
        size = self._icon_size()
        ratio = self.devicePixelRatioF()
        pixmap = QPixmap(int(size * ratio), int(size * ratio))
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(colour, max(1.5, size / 7))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        r = QRectF(pen.widthF(), pen.widthF(), size - 2 * pen.widthF(), size - 2 * pen.widthF())
        if start is None:
            painter.drawEllipse(r)
            c = r.center()
            painter.drawLine(c, c + QPointF(0, -r.height() * 0.3))
            painter.drawLine(c, c + QPointF(r.width() * 0.25, 0))
        else:
            faded = QColor(colour)
            faded.setAlpha(60)
            painter.setPen(QPen(faded, pen.widthF()))
            painter.drawEllipse(r)
            painter.setPen(pen)
            painter.drawArc(r, start * 16, 100 * 16)
        painter.end()
        return pixmap

    # ---- actions -------------------------------------------------------------------------
    @Slot()
    def _on_new_button_clicked(self) -> None:
        self._current = None
        self.list.clearSelection()
        self.refresh()
        self.conversation_selected.emit(None)

    @Slot(QListWidgetItem)
    def _on_list_item_clicked(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        if cid == self._current:
            return
        self._current = cid
        self.rename_button.setEnabled(True)
        self.delete_button.setEnabled(True)
        self.conversation_selected.emit(cid)

    @Slot(str)
    def _on_search_text_changed(self, _text: str) -> None:
        self.refresh()

    @Slot()
    def _on_rename_button_clicked(self) -> None:
        if self._current is not None:
            self.rename(self._current)

    @Slot()
    def _on_delete_button_clicked(self) -> None:
        if self._current is not None:
            self.delete(self._current)

    @Slot(QPoint)
    def _on_list_context_menu_requested(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        cid = item.data(ID_ROLE)
        menu = QMenu(self)
        rename = menu.addAction(self.tr("Rename…"))
        export_md = menu.addAction(self.tr("Export as Markdown…"))
        export_json = menu.addAction(self.tr("Export as JSON…"))
        menu.addSeparator()
        delete = menu.addAction(self.tr("Delete"))
        chosen = menu.exec(self.list.viewport().mapToGlobal(pos))
        if chosen is rename:
            self.rename(cid)
        elif chosen is export_md:
            self.export(cid, "md")
        elif chosen is export_json:
            self.export(cid, "json")
        elif chosen is delete:
            self.delete(cid)

    def export(self, conversation_id: int, fmt: str, path: str | None = None) -> str | None:
        """Write the conversation as Markdown (``md``) or JSON (``json``); asks where unless ``path`` is
        given. Returns the file written, or None when the user cancelled or writing failed (said in a box)."""
        if path is None:
            title = self._store.get_conversation(conversation_id).title
            stem = re.sub(r'[\\/:*?"<>|\s]+', " ", title).strip()[:60] or "conversation"
            folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
            suggested = str(Path(folder or Path.home()) / f"{stem}.{fmt}")
            kinds = self.tr("Markdown (*.md)") if fmt == "md" else self.tr("JSON (*.json)")
            path, _ = QFileDialog.getSaveFileName(self, self.tr("Export conversation"), suggested, kinds)
            if not path:
                return None
        try:
            if fmt == "json":
                data = self._store.export_json(conversation_id)
                text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
            else:
                text = self._store.export_markdown(conversation_id)
            Path(path).write_text(text, encoding="utf-8")
        except Exception as exc:  # a full disk or a read-only folder: say so, keep the window
            QMessageBox.warning(
                self,
                self.tr("Export failed"),
                self.tr("The conversation could not be written to %1:\n%2")
                .replace("%1", path)
                .replace("%2", str(exc)),
            )
            return None
        return path

    def rename(self, conversation_id: int, title: str | None = None) -> None:
        """Rename; asks for the new title unless it is given."""
        if title is None:
            old = self._store.get_conversation(conversation_id).title
            title, ok = QInputDialog.getText(
                self, self.tr("Rename conversation"), self.tr("Title:"), text=old
            )
            if not ok:
                return
        title = title.strip()
        if not title:
            return
        self._store.rename(conversation_id, title)
        self.refresh()
        self.conversation_renamed.emit(conversation_id, title)

    def delete(self, conversation_id: int, confirm: bool = True) -> None:
        if confirm:
            answer = QMessageBox.question(
                self,
                self.tr("Delete conversation"),
                self.tr("Delete this conversation and all its messages? This cannot be undone."),
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._store.delete_conversation(conversation_id)
        if self._current == conversation_id:
            self._current = None
        self.refresh()
        self.conversation_deleted.emit(conversation_id)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else ""
