"""Qt table model of a knowledge base's documents (name, type, chunks, size, added, status)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QCoreApplication,
    QDateTime,
    QLocale,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

from bubble_desktop.core.i18n import localize
from bubble_desktop.ui.i18n import QT_TRANSLATE_NOOP

CONTEXT = "DocumentTableModel"
HEADERS = (
    QT_TRANSLATE_NOOP("DocumentTableModel", "Name"),
    QT_TRANSLATE_NOOP("DocumentTableModel", "Type"),
    QT_TRANSLATE_NOOP("DocumentTableModel", "Chunks"),
    QT_TRANSLATE_NOOP("DocumentTableModel", "Size"),
    QT_TRANSLATE_NOOP("DocumentTableModel", "Added"),
    QT_TRANSLATE_NOOP("DocumentTableModel", "Status"),
)
STATUS_LABELS = {
    "indexed": QT_TRANSLATE_NOOP("DocumentTableModel", "Indexed"),
    "pending": QT_TRANSLATE_NOOP("DocumentTableModel", "Pending"),
    "failed": QT_TRANSLATE_NOOP("DocumentTableModel", "Failed"),
}
TYPE_LABELS = {
    "text": QT_TRANSLATE_NOOP("DocumentTableModel", "Text"),
    "markdown": "Markdown",
    "pdf": "PDF",
    "docx": QT_TRANSLATE_NOOP("DocumentTableModel", "Word"),
    "html": "HTML",
    "csv": "CSV",
    "tsv": "TSV",
    "json": "JSON",
    "jsonl": "JSONL",
    "qa": QT_TRANSLATE_NOOP("DocumentTableModel", "Q&A"),
}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2


def human_size(size: int) -> str:
    """1536 -> "1.5 KB": binary units, one decimal below 10."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{size} B"


class DocumentTableModel(QAbstractTableModel):
    """Rows are ``DocumentInfo`` records (frozen); replaced wholesale by ``set_documents``.

    The model sorts itself and keeps each row's cell texts and sort keys, computed once per refresh:
    a proxy model and per-cell formatting called back into Python for every comparison and every
    size hint, which stalled the GUI for ~150 ms per refresh of 500 documents while indexing.
    """

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._docs: list[Any] = []
        self._cells: list[tuple[str, ...]] = []
        self._keys: list[tuple[Any, ...]] = []
        self._sort_column = 0
        self._sort_order = Qt.SortOrder.AscendingOrder

    def set_documents(self, documents: Sequence[Any]) -> None:
        self.beginResetModel()
        rows = [(doc, self._row_cells(doc), self._row_keys(doc)) for doc in documents]
        self._store_sorted(rows)
        self.endResetModel()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by ``column``; selections follow their rows (persistent indexes are moved)."""
        self._sort_column = column if 0 <= column < len(HEADERS) else 0
        self._sort_order = order
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        old_docs = [self._docs[i.row()] for i in persistent]
        self._store_sorted(list(zip(self._docs, self._cells, self._keys, strict=True)))
        row_of = {id(doc): row for row, doc in enumerate(self._docs)}
        moved = [self.index(row_of[id(doc)], i.column()) for i, doc in zip(persistent, old_docs, strict=True)]
        self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()

    def _store_sorted(self, rows: list[tuple[Any, tuple[str, ...], tuple[Any, ...]]]) -> None:
        col = self._sort_column
        # Ties keep name order, so re-sorting a column is stable for the user.
        descending = self._sort_order == Qt.SortOrder.DescendingOrder
        rows.sort(key=lambda r: (r[2][col], r[2][0]), reverse=descending)
        self._docs = [r[0] for r in rows]
        self._cells = [r[1] for r in rows]
        self._keys = [r[2] for r in rows]

    def document(self, row: int) -> Any:
        return self._docs[row]

    def documents(self) -> list[Any]:
        return list(self._docs)

    def column_texts(self, column: int) -> set[str]:
        """The distinct texts of a column (the tab sizes columns from them, without size-hint calls)."""
        return {cells[column] for cells in self._cells}

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._docs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return QCoreApplication.translate(CONTEXT, HEADERS[section])
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role not in _ROLES or not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cells[row][col]
        doc = self._docs[row]
        if role == SORT_ROLE:
            return self._keys[row][col]
        if role == PATH_ROLE:
            return doc.path
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 5 and doc.error:
                return localize(doc.error)
            return doc.path
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _RIGHT if col in (2, 3) else None
        if role == Qt.ItemDataRole.ForegroundRole and col == 5 and doc.status == "failed":
            return QColor("#d93a3a")
        return None

    @staticmethod
    def _row_keys(doc: Any) -> tuple[Any, ...]:
        return (os.path.basename(doc.path).lower(), doc.type, doc.chunks, doc.size, doc.added, doc.status)

    @staticmethod
    def _row_cells(doc: Any) -> tuple[str, ...]:
        label = TYPE_LABELS.get(doc.type)
        kind = QCoreApplication.translate(CONTEXT, label) if label else str(doc.type).upper()
        status = STATUS_LABELS.get(doc.status)
        locale = QLocale()
        return (
            os.path.basename(doc.path) or doc.path,
            kind,
            locale.toString(int(doc.chunks)),
            human_size(int(doc.size)),
            locale.toString(QDateTime.fromSecsSinceEpoch(int(doc.added)), QLocale.FormatType.ShortFormat),
            QCoreApplication.translate(CONTEXT, status) if status else str(doc.status),
        )


_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_ROLES = frozenset(
    {
        Qt.ItemDataRole.DisplayRole,
        Qt.ItemDataRole.ToolTipRole,
        Qt.ItemDataRole.TextAlignmentRole,
        Qt.ItemDataRole.ForegroundRole,
        SORT_ROLE,
        PATH_ROLE,
    }
)
