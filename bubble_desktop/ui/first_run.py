"""The first-run panel: shown instead of the chat until a model is configured.

Three ways in: choose a model folder, open a GGUF file (runs as it is through llama.cpp), or look at
the recommended models with the memory each needs. The Knowledge tab works meanwhile.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


def total_ram_gb() -> float:
    """Physical memory in GiB (0 when unknown), as the model catalog's fit check measures it."""
    from bubble_desktop.core.models.machine import ram_bytes

    return ram_bytes()[0] / 2**30


class FirstRunPanel(QWidget):
    """Asks for a model; emits what the user chose. The main window does the work."""

    model_folder_chosen = Signal(str)
    gguf_chosen = Signal(str)
    recommended_download_requested = Signal(str)  # catalog id
    models_page_requested = Signal()
    catalog_entry_activated = Signal(str)  # catalog id, double-clicked in the table
    settings_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("firstRunPanel")
        title = QLabel(self.tr("Welcome to O.Bubble"))
        title.setObjectName("firstRunTitle")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        intro = QLabel(
            self.tr(
                "Bubble answers with a chat model that runs on this computer. Choose a model folder "
                "(config.json + weights, e.g. downloaded from Hugging Face) or open a GGUF file. "
                "Your knowledge bases on the Knowledge tab work without a model."
            )
        )
        intro.setWordWrap(True)

        # the main action: the best-fitting catalog model, one click (set_recommended fills it in)
        self.download_button = QPushButton(self.tr("Download the recommended model"))
        self.download_button.setObjectName("downloadRecommendedButton")
        self.download_button.setDefault(True)
        self.download_button.setVisible(False)
        self.download_button.clicked.connect(self._on_download_button_clicked)
        self._recommended = ""
        self.models_button = QPushButton(self.tr("All models…"))
        self.models_button.setObjectName("modelsPageButton")
        self.models_button.clicked.connect(self.models_page_requested)
        self.folder_button = QPushButton(self.tr("Choose model folder…"))
        self.folder_button.setObjectName("chooseModelButton")
        self.folder_button.clicked.connect(self._on_folder_button_clicked)
        self.gguf_button = QPushButton(self.tr("Open GGUF file…"))
        self.gguf_button.setObjectName("openGgufButton")
        self.gguf_button.setToolTip(
            self.tr("Runs the file as it is, quantized, through llama.cpp: fast on a plain CPU.")
        )
        self.gguf_button.clicked.connect(self._on_gguf_button_clicked)
        self.settings_button = QPushButton(self.tr("Use a model server…"))
        self.settings_button.setToolTip(
            self.tr("Point Bubble at an OpenAI-compatible server in Settings → Model.")
        )
        self.settings_button.clicked.connect(self.settings_requested)
        main_action = QHBoxLayout()
        main_action.addWidget(self.download_button)
        main_action.addWidget(self.models_button)
        main_action.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.folder_button)
        buttons.addWidget(self.gguf_button)
        buttons.addWidget(self.settings_button)
        buttons.addStretch(1)

        self.progress = QProgressBar()
        self.progress.setObjectName("importProgress")
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.message = QLabel()
        self.message.setObjectName("firstRunMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setVisible(False)

        ram = total_ram_gb()
        rec_title = QLabel(
            self.tr("Recommended models (this computer has %1 GB of memory)").replace("%1", f"{ram:.0f}")
            if ram
            else self.tr("Recommended models")
        )
        rec_title.setObjectName("recommendedTitle")
        rec_title.setWordWrap(True)
        font = rec_title.font()
        font.setBold(True)
        rec_title.setFont(font)
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("recommendedModels")
        self.table.setHorizontalHeaderLabels(
            [self.tr("Model"), self.tr("Memory needed"), self.tr("Languages"), self.tr("Notes")]
        )
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(self._on_table_cell_double_clicked)
        self._fill_recommendations(ram)
        hint = QLabel(
            self.tr(
                "Double-click a model to open its page; download it with its files, then choose its folder."
            )
        )
        hint.setObjectName("recommendedHint")
        hint.setWordWrap(True)
        self.hint = hint
        self._catalog_ids: list[str] = []

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 16)  # the window fits in 900 px with the sidebar
        layout.setSpacing(12)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addLayout(main_action)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addSpacing(8)
        layout.addWidget(rec_title)
        layout.addWidget(self.table, 1)
        layout.addWidget(hint)

    def _fill_recommendations(self, ram: float) -> None:
        try:
            from bubble_desktop.core.llm.registry import RECOMMENDED, recommend
        except ImportError:
            return
        fitting = {m.hub_id for m in recommend(ram)} if ram else {m.hub_id for m in RECOMMENDED}
        ordered = sorted(RECOMMENDED, key=lambda m: (m.hub_id not in fitting, m.min_ram_gb))
        self.table.setRowCount(len(ordered))
        for row, m in enumerate(ordered):
            name = QTableWidgetItem(m.name)
            name.setData(Qt.ItemDataRole.UserRole, m.hub_id)
            name.setToolTip(m.hub_id)
            memory = QTableWidgetItem(m.memory)
            if m.hub_id not in fitting:
                memory.setToolTip(self.tr("Probably too big for this computer's memory"))
                memory.setForeground(Qt.GlobalColor.darkRed)
            langs = QTableWidgetItem(", ".join(m.languages))
            note = m.note + (
                " " + self.tr("(runs its own code: you will be asked first)") if m.remote_code else ""
            )
            notes = QTableWidgetItem(note.strip())
            for col, item in enumerate((name, memory, langs, notes)):
                self.table.setItem(row, col, item)

    def show_catalog(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        """The table lists the catalog's chat models: (id, name, memory, languages, fit verdict)."""
        self._catalog_ids = [r[0] for r in rows]
        self.table.setRowCount(len(rows))
        for row, (entry_id, name, memory, languages, verdict) in enumerate(rows):
            cells = [QTableWidgetItem(t) for t in (name, memory, languages, verdict)]
            cells[0].setData(Qt.ItemDataRole.UserRole, entry_id)
            if verdict == self.tr("too big"):
                cells[3].setForeground(Qt.GlobalColor.darkRed)
            for col, item in enumerate(cells):
                self.table.setItem(row, col, item)
        self.table.setHorizontalHeaderLabels(
            [self.tr("Model"), self.tr("Memory needed"), self.tr("Languages"), self.tr("On this computer")]
        )
        self.hint.setText(self.tr("Double-click a model to see it on the Models page and download it."))

    def set_recommended(self, entry_id: str, name: str, size: str) -> None:
        """Offer the best fit as the one-click main action."""
        self._recommended = entry_id
        # Short (the name can be long and the window must fit in 900 px); the tooltip says the rest.
        self.download_button.setText(self.tr("Download %1 (%2)").replace("%1", name).replace("%2", size))
        self.download_button.setToolTip(
            self.tr(
                "The model recommended for this computer. Nothing is downloaded until you click. "
                "It then runs on this computer."
            )
        )
        self.download_button.setVisible(bool(entry_id))

    @Slot()
    def _on_download_button_clicked(self) -> None:
        if self._recommended:
            self.recommended_download_requested.emit(self._recommended)

    # ---- feedback from the main window -------------------------------------------------
    def show_progress(self, fraction: float, what: str) -> None:
        self.progress.setVisible(True)
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 100))
        self.progress.setFormat(f"%p% · {what}" if what else "%p%")
        self.folder_button.setEnabled(False)
        self.gguf_button.setEnabled(False)
        self.download_button.setEnabled(False)

    def show_message(self, text: str, error: bool = False) -> None:
        self.progress.setVisible(False)
        self.folder_button.setEnabled(True)
        self.gguf_button.setEnabled(True)
        self.download_button.setEnabled(True)
        self.message.setText(text)
        self.message.setProperty("role", "error" if error else "")
        self.message.setStyleSheet("color: #c62828;" if error else "")
        self.message.setVisible(bool(text))

    # ---- user actions ------------------------------------------------------------------
    @Slot()
    def _on_folder_button_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Choose a model folder"))
        if folder:
            self.model_folder_chosen.emit(folder)

    @Slot()
    def _on_gguf_button_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, self.tr("Open a GGUF file"), "", self.tr("GGUF models (*.gguf);;All files (*)")
        )
        if path:
            self.gguf_chosen.emit(path)

    @Slot(int, int)
    def _on_table_cell_double_clicked(self, row: int, _column: int) -> None:
        item = self.table.item(row, 0)
        if item is None:
            return
        if self._catalog_ids:  # catalog rows: the Models page downloads them
            self.catalog_entry_activated.emit(str(item.data(Qt.ItemDataRole.UserRole)))
            return
        QDesktopServices.openUrl(QUrl(f"https://huggingface.co/{item.data(Qt.ItemDataRole.UserRole)}"))
