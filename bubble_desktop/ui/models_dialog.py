"""Models page: the shipped catalog with what fits this computer, one-click downloads, use/delete.

Downloads belong to :class:`Downloads` (one per window, not to the dialog): they keep going when
the page is closed and the status bar shows them. ``DownloadManager`` calls its listener from
download threads; :class:`Downloads` turns those calls into Qt signals, which reach the GUI thread
queued. Nothing is fetched until the user presses Download (the page says so).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication, QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.errors import UserFacingError

log = logging.getLogger(__name__)

GB = 1024**3


def human_size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / 2**20:.0f} MB"


class Downloads(QObject):
    """The window's downloads: starts them on the core's DownloadManager and reports in Qt signals."""

    progressed = Signal(str, object)  # entry id or repo, Progress
    finished = Signal(str, object)  # entry id or repo, DownloadResult
    failed = Signal(str, str, str)  # entry id or repo, message, hint

    def __init__(
        self, paths: Any, proxy: str = "", catalog: Any = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._paths = paths
        self._proxy = proxy
        self._catalog = catalog
        self._manager: Any = None
        self.jobs: dict[str, Any] = {}  # target -> DownloadJob, while it runs
        self.last: dict[str, Any] = {}  # target -> the last Progress
        self.finished.connect(self._forget)
        self.failed.connect(self._forget)

    @property
    def manager(self) -> Any:
        if self._manager is None:
            from bubble_desktop.core.models.download import DownloadManager

            self._manager = DownloadManager(self._paths, catalog=self._catalog, proxy=self._proxy or None)
        return self._manager

    @property
    def catalog(self) -> Any:
        return self.manager.catalog

    def start(self, target: str, source: str = "auto") -> None:
        from bubble_desktop.core.models.download import CallbackListener, DownloadRequest

        if target in self.jobs:
            return
        listener = CallbackListener(
            on_progress=lambda p: self.progressed.emit(target, p),
            on_finished=lambda r: self.finished.emit(target, r),
            on_failed=lambda _job, exc: self.failed.emit(
                target,
                getattr(exc, "message", str(exc)),
                getattr(exc, "hint", ""),
            ),
        )
        self.jobs[target] = self.manager.start(DownloadRequest(target, source=source), listener)

    def _forget(self, target: str, *_args: Any) -> None:
        self.jobs.pop(target, None)
        self.last.pop(target, None)

    def cancel(self, target: str) -> None:
        job = self.jobs.get(target)
        if job is not None:
            job.cancel()

    def downloaded(self) -> dict[str, dict[str, Any]]:
        """Finished downloads by catalog id (or name), with the path to use."""
        out: dict[str, dict[str, Any]] = {}
        for m in self.manager.downloaded():
            key = str(m.get("entry_id") or m.get("name"))
            folder = Path(str(m["path"]))
            files = [str(f["path"]) for f in m.get("files", [])]
            ggufs = [f for f in files if f.lower().endswith(".gguf")]
            use = folder / ggufs[0] if m.get("format") == "gguf" and ggufs else folder
            out[key] = {**m, "use_path": str(use), "folder": str(folder)}
        return out

    def remove(self, name: str) -> None:
        self.manager.remove(name)

    def shutdown(self) -> None:
        if self._manager is not None:
            self._manager.shutdown()


class ModelsDialog(QDialog):
    """The catalog: filter, download with progress, use for chat / knowledge bases, delete."""

    use_for_chat = Signal(str)  # a .gguf file or a model folder
    use_for_knowledge = Signal(str)  # an embedding model folder

    COLUMNS = (
        QT_TRANSLATE_NOOP("ModelsDialog", "Model"),
        QT_TRANSLATE_NOOP("ModelsDialog", "Kind"),
        QT_TRANSLATE_NOOP("ModelsDialog", "Download size"),
        QT_TRANSLATE_NOOP("ModelsDialog", "Memory"),
        QT_TRANSLATE_NOOP("ModelsDialog", "On this computer"),
        QT_TRANSLATE_NOOP("ModelsDialog", "Languages"),
        QT_TRANSLATE_NOOP("ModelsDialog", "Licence"),
    )

    def __init__(self, downloads: Downloads, machine: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsDialog")
        self.setWindowTitle(self.tr("Models"))
        self.resize(980, 560)
        self.downloads = downloads
        if machine is None:
            from bubble_desktop.core.models.machine import detect

            machine = detect(downloads.manager.downloads_dir, gpu=False)
        self.machine = machine

        note = QLabel(
            self.tr(
                "Bubble fetches nothing until you press Download. Files come from Hugging Face, its "
                "mirror or ModelScope, whichever answers (bubble-cli models sources sets the order)."
            )
        )
        note.setObjectName("modelsPrivacyNote")
        note.setWordWrap(True)
        self.kind_filter = QComboBox()
        self.kind_filter.addItem(self.tr("Chat and embedding"), "")
        self.kind_filter.addItem(self.tr("Chat models"), "chat")
        self.kind_filter.addItem(self.tr("Embedding models"), "embedding")
        self.language_filter = QComboBox()
        self.language_filter.addItem(self.tr("Any language"), "")
        self.language_filter.addItem(self.tr("Chinese"), "zh")
        self.language_filter.addItem(self.tr("English"), "en")
        self.fits_filter = QCheckBox(self.tr("Fits this computer"))
        for w in (self.kind_filter, self.language_filter):
            w.currentIndexChanged.connect(self.refresh)
        self.fits_filter.toggled.connect(self.refresh)
        filters = QHBoxLayout()
        filters.addWidget(self.kind_filter)
        filters.addWidget(self.language_filter)
        filters.addWidget(self.fits_filter)
        filters.addStretch(1)

        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("catalogTable")
        self.table.setHorizontalHeaderLabels(
            [QCoreApplication.translate("ModelsDialog", c) for c in self.COLUMNS]
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.setVisible(False)
        self.message = QLabel()
        self.message.setObjectName("modelsMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.download_button = QPushButton(self.tr("Download"))
        self.download_button.setObjectName("downloadButton")
        self.download_button.clicked.connect(self._on_download_clicked)
        self.cancel_button = QPushButton(self.tr("Cancel download"))
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.chat_button = QPushButton(self.tr("Use for chat"))
        self.chat_button.setObjectName("useForChatButton")
        self.chat_button.clicked.connect(self._on_use_clicked)
        self.kb_button = QPushButton(self.tr("Use for knowledge bases"))
        self.kb_button.setObjectName("useForKnowledgeButton")
        self.kb_button.clicked.connect(self._on_use_clicked)
        self.folder_button = QPushButton(self.tr("Open folder"))
        self.folder_button.clicked.connect(self._on_folder_clicked)
        self.delete_button = QPushButton(self.tr("Delete"))
        self.delete_button.clicked.connect(self._on_delete_clicked)
        buttons = QHBoxLayout()
        for b in (
            self.download_button,
            self.cancel_button,
            self.chat_button,
            self.kb_button,
            self.folder_button,
            self.delete_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        close = QPushButton(self.tr("Close"))
        close.clicked.connect(self.close)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(buttons)

        downloads.progressed.connect(self._on_downloads_progressed)
        downloads.finished.connect(self._on_downloads_finished)
        downloads.failed.connect(self._on_downloads_failed)
        self._downloaded: dict[str, dict[str, Any]] = {}
        self.refresh()

    # ---- table ----------------------------------------------------------------------------
    def entries(self) -> list[Any]:
        from bubble_desktop.core.models.machine import fit

        kind = self.kind_filter.currentData()
        language = self.language_filter.currentData()
        out = []
        for e in self.downloads.catalog.entries:
            if kind and e.kind != kind:
                continue
            if language and language not in e.languages:
                continue
            if self.fits_filter.isChecked() and fit(e, self.machine) == "too big":
                continue
            out.append(e)
        return out

    @Slot()
    def refresh(self) -> None:
        from bubble_desktop.core.models.machine import fit, fit_reason

        self._downloaded = self.downloads.downloaded()
        verdicts = {
            "runs well": self.tr("runs well"),
            "tight": self.tr("tight"),
            "too big": self.tr("too big"),
        }
        selected = self.selected_id()
        entries = self.entries()
        self.table.setRowCount(len(entries))
        for row, e in enumerate(entries):
            verdict = fit(e, self.machine)
            done = e.id in self._downloaded
            name = QTableWidgetItem(e.name + (" ✓" if done else ""))
            name.setData(Qt.ItemDataRole.UserRole, e.id)
            name.setToolTip(e.note or e.family)
            kind = QTableWidgetItem(self.tr("chat") if e.kind == "chat" else self.tr("embedding"))
            size = QTableWidgetItem(("~" if e.size_approx else "") + human_size(e.size_bytes))
            memory = QTableWidgetItem(f"{e.ram_gb:.1f} GB")
            fits = QTableWidgetItem(verdicts.get(verdict, verdict))
            fits.setToolTip(fit_reason(e, self.machine))
            if verdict == "too big":
                fits.setForeground(Qt.GlobalColor.darkRed)
            langs = QTableWidgetItem(", ".join(e.languages))
            licence = QTableWidgetItem(e.licence)
            for col, item in enumerate((name, kind, size, memory, fits, langs, licence)):
                self.table.setItem(row, col, item)
            if e.id == selected:
                self.table.selectRow(row)
        if self.table.currentRow() < 0 and entries:
            self.table.selectRow(0)
        self._update_buttons()

    def selected_id(self) -> str:
        items = self.table.selectedItems()
        if not items:
            return ""
        item = self.table.item(items[0].row(), 0)
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else ""

    def select(self, entry_id: str) -> bool:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == entry_id:
                self.table.selectRow(row)
                return True
        return False

    @Slot()
    def _update_buttons(self) -> None:
        entry_id = self.selected_id()
        entry = self.downloads.catalog.get(entry_id) if entry_id else None
        done = entry_id in self._downloaded
        running = entry_id in self.downloads.jobs
        self.download_button.setEnabled(entry is not None and not done and not running)
        self.cancel_button.setEnabled(running)
        self.chat_button.setEnabled(done and entry is not None and entry.kind == "chat")
        self.kb_button.setEnabled(done and entry is not None and entry.kind == "embedding")
        self.folder_button.setEnabled(done)
        self.delete_button.setEnabled(done and not running)
        last = self.downloads.last.get(entry_id)
        self.progress.setVisible(running)
        if running and last is not None:
            self._show_progress(last)

    # ---- actions --------------------------------------------------------------------------
    @Slot()
    def _on_download_clicked(self) -> None:
        entry_id = self.selected_id()
        if not entry_id:
            return
        try:
            self.downloads.start(entry_id)
        except UserFacingError as exc:
            self.message.setText(f"{exc.message}\n{exc.hint}".strip())
            return
        self.message.setText(self.tr("Downloading %1…").replace("%1", entry_id))
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._update_buttons()

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.downloads.cancel(self.selected_id())

    @Slot()
    def _on_use_clicked(self) -> None:
        info = self._downloaded.get(self.selected_id())
        if info is None:
            return
        if self.sender() is self.kb_button:
            self.use_for_knowledge.emit(str(info["folder"]))
        else:
            self.use_for_chat.emit(str(info["use_path"]))

    @Slot()
    def _on_folder_clicked(self) -> None:
        info = self._downloaded.get(self.selected_id())
        if info is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(info["folder"])))

    @Slot()
    def _on_delete_clicked(self) -> None:
        entry_id = self.selected_id()
        info = self._downloaded.get(entry_id)
        if info is None:
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(self.tr("Delete model"))
        box.setText(self.tr("Delete the downloaded files of %1?").replace("%1", entry_id))
        delete = box.addButton(self.tr("Delete"), QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is not delete:
            return
        try:
            self.downloads.remove(str(info.get("name") or entry_id))
        except UserFacingError as exc:
            self.message.setText(f"{exc.message}\n{exc.hint}".strip())
        self.refresh()

    # ---- download reports -----------------------------------------------------------------
    def _show_progress(self, p: Any) -> None:
        if p.total_bytes:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        speed = f"{p.speed_bps / 2**20:.1f} MB/s" if p.speed_bps else ""
        eta = f"{int(p.eta_s // 60)}:{int(p.eta_s % 60):02d}" if p.eta_s is not None else ""
        done = f"{human_size(p.done_bytes)} / {human_size(p.total_bytes)}" if p.total_bytes else ""
        self.progress.setFormat(" · ".join(x for x in (f"{p.fraction:.0%}", done, speed, eta) if x))
        if p.message:
            self.message.setText(p.message)

    @Slot(str, object)
    def _on_downloads_progressed(self, target: str, p: Any) -> None:
        self.downloads.last[target] = p
        if target == self.selected_id():
            self.progress.setVisible(True)
            self._show_progress(p)

    @Slot(str, object)
    def _on_downloads_finished(self, target: str, result: Any) -> None:
        self.message.setText(self.tr("%1 is ready: %2").replace("%1", target).replace("%2", str(result.path)))
        self.progress.setVisible(False)
        self.refresh()

    @Slot(str, str, str)
    def _on_downloads_failed(self, target: str, message: str, hint: str) -> None:
        self.message.setText(f"{target}: {message}\n{hint}".strip())
        self.progress.setVisible(False)
        self.refresh()
