"""Qt table model of a knowledge base's documents (name, type, chunks, size, added, status)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractTableModel,
    QCoreApplication,
    QDateTime,
    QLocale,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

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
    """Rows are ``DocumentInfo`` records (frozen); replaced wholesale by ``set_documents``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._docs: list[Any] = []

    def set_documents(self, documents: Sequence[Any]) -> None:
        self.beginResetModel()
        self._docs = sorted(documents, key=lambda d: os.path.basename(d.path).lower())
        self.endResetModel()

    def document(self, row: int) -> Any:
        return self._docs[row]

    def documents(self) -> list[Any]:
        return list(self._docs)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._docs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return QCoreApplication.translate(CONTEXT, HEADERS[section])
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        doc = self._docs[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(doc, col)
        if role == SORT_ROLE:
            return (os.path.basename(doc.path).lower(), doc.type, doc.chunks, doc.size, doc.added, doc.status)[col]
        if role == PATH_ROLE:
            return doc.path
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 5 and doc.error:
                return doc.error
            return doc.path
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == 5 and doc.status == "failed":
            return QColor("#d93a3a")
        return None

    def _display(self, doc: Any, col: int) -> str:
        if col == 0:
            return os.path.basename(doc.path) or doc.path
        if col == 1:
            label = TYPE_LABELS.get(doc.type)
            return QCoreApplication.translate(CONTEXT, label) if label else str(doc.type).upper()
        if col == 2:
            return QLocale().toString(int(doc.chunks))
        if col == 3:
            return human_size(int(doc.size))
        if col == 4:
            when = QDateTime.fromSecsSinceEpoch(int(doc.added))
            return QLocale().toString(when, QLocale.FormatType.ShortFormat)
        label = STATUS_LABELS.get(doc.status)
        return QCoreApplication.translate(CONTEXT, label) if label else str(doc.status)
