"""Models page: the shipped catalog with what fits this computer, one-click downloads, use/delete.

Downloads belong to :class:`Downloads` (one per window, not to the dialog): they keep going when
the page is closed and the status bar shows them. ``DownloadManager`` calls its listener from
download threads; :class:`Downloads` turns those calls into Qt signals, which reach the GUI thread
queued. Nothing is fetched until the user presses Download (the page says so).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.ui.dialogs import ask
from bubble_desktop.ui.i18n import QT_TRANSLATE_NOOP

log = logging.getLogger(__name__)

GB = 1024**3


def human_size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / 2**20:.0f} MB"


class Downloads(QObject):
    """The window's downloads: starts them on the core's DownloadManager and reports in Qt signals."""

    progressed = Signal(str, object)  # entry id or repo, Progress
    finished = Signal(str, object)  # entry id or repo, DownloadResult
    failed = Signal(str, str, str)  # entry id or repo, message, hint
    searched = Signal(str, str, object)  # query, the source's label, [HubModel]
    listed = Signal(str, object)  # repo, RepoListing
    browse_failed = Signal(str, str, str)  # query or repo, message, hint

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

    def _in_thread(self, key: str, work: Any, done: Any) -> None:
        """Run ``work()`` off the GUI thread; ``done(result)`` (a signal's emit) reports it, queued."""

        def run() -> None:
            try:
                done(work())
            except UserFacingError as exc:
                self.browse_failed.emit(key, exc.message, exc.hint)
            except Exception as exc:  # noqa: BLE001 - shown to the user, the page stays usable
                log.exception("hub request failed")
                self.browse_failed.emit(key, str(exc) or type(exc).__name__, "")

        threading.Thread(target=run, name="bubble-hub", daemon=True).start()

    def search(self, query: str, source: str = "auto") -> None:
        """Search the hub by name (the query leaves this computer: only on the user's request)."""
        self._in_thread(
            query,
            lambda: self.manager.search(query, source),
            lambda result: self.searched.emit(query, result[0], result[1]),
        )

    def list_files(self, repo: str, source: str = "auto") -> None:
        self._in_thread(
            repo,
            lambda: self.manager.list_repo(repo, source),
            lambda listing: self.listed.emit(repo, listing),
        )

    def start(self, target: str, source: str = "auto", files: tuple[str, ...] = ()) -> None:
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
        self.jobs[target] = self.manager.start(DownloadRequest(target, files, source=source), listener)

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
                "Bubble fetches nothing until you press Download or search the hub. Files come from "
                "Hugging Face, its mirror or ModelScope, whichever answers first (Sources… sets the order)."
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

        buttons.removeWidget(close)  # Close goes under the tabs, for both
        catalog_page = QWidget()
        catalog_layout = QVBoxLayout(catalog_page)
        catalog_layout.addLayout(filters)
        catalog_layout.addWidget(self.table, 1)
        catalog_layout.addLayout(buttons)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("modelsTabs")
        self.tabs.addTab(catalog_page, self.tr("Catalog"))
        self.tabs.addTab(self._build_hub_page(), self.tr("Search the hub"))
        sources = QPushButton(self.tr("Sources…"))
        sources.setObjectName("modelSourcesButton")
        sources.clicked.connect(self._on_sources_clicked)
        bottom = QHBoxLayout()
        bottom.addWidget(sources)
        bottom.addStretch(1)
        bottom.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(bottom)

        downloads.progressed.connect(self._on_downloads_progressed)
        downloads.finished.connect(self._on_downloads_finished)
        downloads.failed.connect(self._on_downloads_failed)
        downloads.searched.connect(self._on_searched)
        downloads.listed.connect(self._on_listed)
        downloads.browse_failed.connect(self._on_browse_failed)
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
        answer = ask(
            self,
            icon=QMessageBox.Icon.Warning,
            title=self.tr("Delete model"),
            text=self.tr("Delete the downloaded files of %1?").replace("%1", entry_id),
            choices=[("delete", self.tr("Delete"), QMessageBox.ButtonRole.DestructiveRole)],
        )
        if answer != "delete":
            return
        try:
            self.downloads.remove(str(info.get("name") or entry_id))
        except UserFacingError as exc:
            self.message.setText(f"{exc.message}\n{exc.hint}".strip())
        self.refresh()

    # ---- the hub: search by name, pick a file, download ------------------------------------
    def _build_hub_page(self) -> QWidget:
        page = QWidget()
        self.hub_query = QLineEdit()
        self.hub_query.setObjectName("hubQuery")
        self.hub_query.setPlaceholderText(self.tr("A model name, e.g. Qwen2.5 1.5B GGUF"))
        self.hub_query.returnPressed.connect(self._on_hub_search_clicked)
        self.hub_search_button = QPushButton(self.tr("Search"))
        self.hub_search_button.setObjectName("hubSearchButton")
        self.hub_search_button.clicked.connect(self._on_hub_search_clicked)
        row = QHBoxLayout()
        row.addWidget(self.hub_query, 1)
        row.addWidget(self.hub_search_button)
        hint = QLabel(
            self.tr(
                "The words you search for are sent to the hub (Hugging Face or hf-mirror). "
                "GGUF models run fastest on a computer without a big graphics card."
            )
        )
        hint.setWordWrap(True)
        hint.setObjectName("hubPrivacyNote")
        self.hub_table = QTableWidget(0, 3)
        self.hub_table.setObjectName("hubTable")
        self.hub_table.setHorizontalHeaderLabels(
            [self.tr("Repository"), self.tr("Downloads"), self.tr("Format")]
        )
        self.hub_table.verticalHeader().setVisible(False)
        self.hub_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.hub_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.hub_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.hub_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.hub_table.itemSelectionChanged.connect(self._on_hub_selection_changed)
        self.hub_files = QComboBox()
        self.hub_files.setObjectName("hubFiles")
        self.hub_files.setMinimumContentsLength(40)
        self.hub_files.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.hub_download_button = QPushButton(self.tr("Download"))
        self.hub_download_button.setObjectName("hubDownloadButton")
        self.hub_download_button.clicked.connect(self._on_hub_download_clicked)
        self.hub_chat_button = QPushButton(self.tr("Use for chat"))
        self.hub_chat_button.setObjectName("hubUseForChatButton")
        self.hub_chat_button.clicked.connect(self._on_hub_use_clicked)
        files_row = QHBoxLayout()
        files_row.addWidget(QLabel(self.tr("File:")))
        files_row.addWidget(self.hub_files, 1)
        files_row.addWidget(self.hub_download_button)
        files_row.addWidget(self.hub_chat_button)
        layout = QVBoxLayout(page)
        layout.addLayout(row)
        layout.addWidget(hint)
        layout.addWidget(self.hub_table, 1)
        layout.addLayout(files_row)
        self._listings: dict[str, Any] = {}
        self._update_hub_buttons()
        return page

    def hub_repo(self) -> str:
        items = self.hub_table.selectedItems()
        if not items:
            return ""
        item = self.hub_table.item(items[0].row(), 0)
        return item.text() if item is not None else ""

    def _hub_name(self, repo: str) -> str:
        return repo.replace("/", "--")  # the folder (and registered name) the downloader gives a repo

    def _update_hub_buttons(self) -> None:
        repo = self.hub_repo()
        running = repo in self.downloads.jobs
        self.hub_download_button.setEnabled(bool(repo) and self.hub_files.count() > 0 and not running)
        self.hub_chat_button.setEnabled(bool(repo) and self._hub_name(repo) in self._downloaded)

    @Slot()
    def _on_hub_search_clicked(self) -> None:
        query = self.hub_query.text().strip()
        if not query:
            return
        self.hub_search_button.setEnabled(False)
        self.message.setText(self.tr("Searching for “%1”…").replace("%1", query))
        self.downloads.search(query)

    @Slot(str, str, object)
    def _on_searched(self, query: str, where: str, hits: list[Any]) -> None:
        self.hub_search_button.setEnabled(True)
        self.hub_table.setRowCount(len(hits))
        for row, hit in enumerate(hits):
            repo = QTableWidgetItem(hit.repo)
            count = QTableWidgetItem(f"{hit.downloads:,}")
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            fmt = QTableWidgetItem("GGUF" if hit.gguf else "transformers")
            for col, item in enumerate((repo, count, fmt)):
                self.hub_table.setItem(row, col, item)
        if hits:
            self.message.setText(
                (
                    self.tr("%1 models on %2 match “%3”.")
                    if len(hits) != 1
                    else self.tr("1 model on %2 matches “%3”.")
                )
                .replace("%1", str(len(hits)))
                .replace("%2", where)
                .replace("%3", query)
            )
            self.hub_table.selectRow(0)
        else:
            self.message.setText(
                self.tr("Nothing on %1 matches “%2”.").replace("%1", where).replace("%2", query)
            )
        self._update_hub_buttons()

    @Slot()
    def _on_hub_selection_changed(self) -> None:
        repo = self.hub_repo()
        self.hub_files.clear()
        if repo in self._listings:
            self._fill_files(self._listings[repo])
        elif repo:
            self.hub_files.addItem(self.tr("Reading the file list…"))
            self.hub_files.setEnabled(False)
            self.downloads.list_files(repo)
        self._update_hub_buttons()

    def _fill_files(self, listing: Any) -> None:
        """A GGUF repo: one item per .gguf file (Q4_K_M first). Otherwise the whole model."""
        self.hub_files.clear()
        self.hub_files.setEnabled(True)
        ggufs = sorted(
            (f for f in listing.files if f.path.lower().endswith(".gguf")),
            key=lambda f: ("q4_k_m" not in f.path.lower(), f.path),
        )
        for f in ggufs:
            size = f" ({human_size(f.size)})" if f.size else ""
            self.hub_files.addItem(f.path + size, (f.path,))
        if not ggufs and listing.files:
            total = sum(f.size or 0 for f in listing.files)
            self.hub_files.addItem(self.tr("The whole model (%1)").replace("%1", human_size(total)), ())
        self._update_hub_buttons()

    @Slot(str, object)
    def _on_listed(self, repo: str, listing: Any) -> None:
        self._listings[repo] = listing
        if repo == self.hub_repo():
            self._fill_files(listing)

    @Slot(str, str, str)
    def _on_browse_failed(self, key: str, message: str, hint: str) -> None:
        self.hub_search_button.setEnabled(True)
        if self.hub_files.count() == 1 and not self.hub_files.isEnabled():
            self.hub_files.clear()
        self.message.setText(f"{message}\n{hint}".strip())
        self._update_hub_buttons()

    @Slot()
    def _on_hub_download_clicked(self) -> None:
        repo = self.hub_repo()
        if not repo or self.hub_files.count() == 0:
            return
        files = tuple(self.hub_files.currentData() or ())
        try:
            self.downloads.start(repo, files=files)
        except UserFacingError as exc:
            self.message.setText(f"{exc.message}\n{exc.hint}".strip())
            return
        self.message.setText(self.tr("Downloading %1…").replace("%1", repo))
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._update_hub_buttons()

    @Slot()
    def _on_hub_use_clicked(self) -> None:
        info = self._downloaded.get(self._hub_name(self.hub_repo()))
        if info is not None:
            self.use_for_chat.emit(str(info["use_path"]))

    @Slot()
    def _on_sources_clicked(self) -> None:
        SourcesDialog(self.downloads.manager.paths, self).exec()

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
        if target in (self.selected_id(), self.hub_repo()):
            self.progress.setVisible(True)
            self._show_progress(p)

    @Slot(str, object)
    def _on_downloads_finished(self, target: str, result: Any) -> None:
        self.message.setText(self.tr("%1 is ready: %2").replace("%1", target).replace("%2", str(result.path)))
        self.progress.setVisible(False)
        self.refresh()
        self._update_hub_buttons()

    @Slot(str, str, str)
    def _on_downloads_failed(self, target: str, message: str, hint: str) -> None:
        self.message.setText(f"{target}: {message}\n{hint}".strip())
        self.progress.setVisible(False)
        self.refresh()


class SourcesDialog(QDialog):
    """Where "auto" downloads from: the order the sources are tried in, and a hub of your own."""

    LABELS = {
        "hf": QT_TRANSLATE_NOOP("SourcesDialog", "Hugging Face (huggingface.co)"),
        "hf-mirror": QT_TRANSLATE_NOOP("SourcesDialog", "hf-mirror.com (a mirror reachable in China)"),
        "modelscope": QT_TRANSLATE_NOOP("SourcesDialog", "ModelScope (modelscope.cn)"),
    }

    def __init__(self, paths: Any, parent: QWidget | None = None) -> None:
        from bubble_desktop.core.models.sources import BUILTIN, SourceConfig

        super().__init__(parent)
        self.setObjectName("sourcesDialog")
        self.setWindowTitle(self.tr("Model sources"))
        self.paths = paths
        self.config = SourceConfig.load(paths)
        intro = QLabel(
            self.tr(
                "Downloads try these in order and use the first that answers within 2 seconds. "
                "Untick a source to skip it."
            )
        )
        intro.setWordWrap(True)
        self.order = QListWidget()
        self.order.setObjectName("sourcesOrder")
        self.order.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        custom = [n for n in self.config.order if n not in BUILTIN]
        names = [n for n in self.config.order if n in BUILTIN] + [
            n for n in BUILTIN if n not in self.config.order
        ]
        for name in names:
            self._add(name, checked=name in self.config.order)
        up = QPushButton(self.tr("Move up"))
        up.clicked.connect(lambda: self._move(-1))
        down = QPushButton(self.tr("Move down"))
        down.clicked.connect(lambda: self._move(1))
        moves = QHBoxLayout()
        moves.addWidget(up)
        moves.addWidget(down)
        moves.addStretch(1)
        self.custom = QLineEdit(custom[0] if custom else "")
        self.custom.setObjectName("customHub")
        self.custom.setPlaceholderText(self.tr("Optional: your own Hugging Face-compatible hub, https://…"))
        self.token = QLineEdit(self.config.hf_token)
        self.token.setObjectName("hfToken")
        self.token.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.token.setPlaceholderText(
            self.tr("Hugging Face access token, only for gated models (sent to huggingface.co only)")
        )
        self.last_good = QLabel(
            self.tr("Last worked: %1").replace("%1", self.config.last_good) if self.config.last_good else ""
        )
        save = QPushButton(self.tr("Save"))
        save.setObjectName("saveSourcesButton")
        save.setDefault(True)
        save.clicked.connect(self._on_save_clicked)
        cancel = QPushButton(self.tr("Cancel"))
        cancel.clicked.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(self.last_good)
        bottom.addStretch(1)
        bottom.addWidget(save)
        bottom.addWidget(cancel)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.order, 1)
        layout.addLayout(moves)
        layout.addWidget(self.custom)
        layout.addWidget(self.token)
        layout.addWidget(self.message)
        layout.addLayout(bottom)
        self.resize(520, 340)

    def _add(self, name: str, *, checked: bool) -> None:
        item = QListWidgetItem(QCoreApplication.translate("SourcesDialog", self.LABELS.get(name, name)))
        item.setData(Qt.ItemDataRole.UserRole, name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.order.addItem(item)

    def _move(self, step: int) -> None:
        row = self.order.currentRow()
        target = row + step
        if row < 0 or not 0 <= target < self.order.count():
            return
        item = self.order.takeItem(row)
        self.order.insertItem(target, item)
        self.order.setCurrentRow(target)

    def chosen_order(self) -> list[str]:
        names = []
        for row in range(self.order.count()):
            item = self.order.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                names.append(str(item.data(Qt.ItemDataRole.UserRole)))
        url = self.custom.text().strip().rstrip("/")
        if url:
            names.insert(0, url)  # your own hub first: it is there because you want it used
        return names

    @Slot()
    def _on_save_clicked(self) -> None:
        url = self.custom.text().strip()
        if url and not url.startswith(("http://", "https://")):
            self.message.setText(self.tr("Your own hub must be an http:// or https:// address."))
            return
        order = self.chosen_order()
        if not order:
            self.message.setText(self.tr("Keep at least one source ticked."))
            return
        self.config.order = order
        self.config.hf_token = self.token.text().strip()
        try:
            self.config.save(self.paths)
        except OSError as exc:
            self.message.setText(self.tr("Could not save the sources: %1").replace("%1", str(exc)))
            return
        self.accept()
