"""Train on your data (LoRA): the data and its preview, the base model, settings, and a live job.

The job is core's :class:`TrainingJob` (a spawned child process). A 200 ms ``QTimer`` drains its
events with ``poll(0)``, a non-blocking queue read, so the GUI thread never waits on it. The
preview (rows read, per-row problems, token lengths with the base model's chat template, the
defaults picked for this machine and the memory estimate) is core's ``check_job`` on a
:class:`BackgroundTask`. Closing the page while training asks: keep training in the background
(the page comes back when it ends) or stop with a checkpoint (Resume continues from it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QPainter, QPaintEvent, QPalette, QPen, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.errors import UserFacingError
from bubble_desktop.core.train.lora import (
    LoraSettings,
    TrainingJob,
    adapter_dir,
    check_name,
    latest_checkpoint,
    partial_dir,
)
from bubble_desktop.ui.dialogs import ask

log = logging.getLogger(__name__)

DATA_FILTER = "*.txt *.jsonl *.ndjson *.json *.csv *.tsv"
MAX_PROBLEM_ROWS = 500
POLL_MS = 200
VAL_COLOR = QColor("#e08a1e")


def is_gguf(path: str) -> bool:
    """A .gguf file, by name or by its magic bytes (four bytes read, never the file)."""
    if path.lower().endswith(".gguf"):
        return True
    p = Path(path).expanduser()
    if not p.is_file():
        return False
    try:
        with p.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _set_role(label: QLabel, role: str) -> None:
    label.setProperty("role", role)
    label.style().unpolish(label)
    label.style().polish(label)


class LossPlot(QWidget):
    """A line plot of the training loss per step, with the validation loss as dots (QPainter: the
    QtCharts module is not in PySide6-Essentials)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.total_steps = 0
        self.setMinimumHeight(170)

    def clear(self) -> None:
        self.points.clear()
        self.val_points.clear()
        self.total_steps = 0
        self.update()

    def set_total(self, total: int) -> None:
        self.total_steps = total
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        if loss == loss:  # not NaN
            self.points.append((step, loss))
            self.update()

    def add_val(self, step: int, loss: float) -> None:
        if loss == loss:
            self.val_points.append((step, loss))
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.Text)
        muted = pal.color(QPalette.ColorRole.PlaceholderText)
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        fm = p.fontMetrics()
        left, right, top, bottom = fm.horizontalAdvance("00.000") + 12, 12, fm.height() + 10, fm.height() + 10
        area = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        p.setPen(QPen(muted, 1))
        p.drawRect(area)
        values = [v for _, v in self.points] + [v for _, v in self.val_points]
        if not values:
            p.drawText(
                area, Qt.AlignmentFlag.AlignCenter, self.tr("The loss appears here once training starts.")
            )
            p.end()
            return
        lo, hi = min(values), max(values)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.08
        lo, hi = max(0.0, lo - pad), hi + pad
        last = max([s for s, _ in self.points] + [s for s, _ in self.val_points])
        x_max = max(1, self.total_steps, last)

        def at(step: float, value: float) -> QPointF:
            return QPointF(
                area.left() + area.width() * step / x_max,
                area.bottom() - area.height() * (value - lo) / (hi - lo),
            )

        grid = QColor(muted)
        grid.setAlpha(70)
        for i in range(5):
            v = lo + (hi - lo) * i / 4
            y = at(0, v).y()
            p.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            p.setPen(text)
            p.drawText(
                QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                f"{v:.3g}",
            )
        p.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), fm.height()),
            int(Qt.AlignmentFlag.AlignLeft),
            "0",
        )
        p.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), fm.height()),
            int(Qt.AlignmentFlag.AlignRight),
            self.tr("step %1").replace("%1", str(x_max)),
        )
        accent = pal.color(QPalette.ColorRole.Highlight)
        if self.points:
            p.setPen(QPen(accent, 2))
            if len(self.points) == 1:
                p.drawEllipse(at(*self.points[0]), 3, 3)
            else:
                p.drawPolyline(QPolygonF([at(s, v) for s, v in self.points]))
        if self.val_points:
            p.setPen(QPen(VAL_COLOR, 1.5, Qt.PenStyle.DashLine))
            if len(self.val_points) > 1:
                p.drawPolyline(QPolygonF([at(s, v) for s, v in self.val_points]))
            p.setBrush(QBrush(VAL_COLOR))
            for s, v in self.val_points:
                p.drawEllipse(at(s, v), 3.5, 3.5)
            p.setBrush(Qt.BrushStyle.NoBrush)
        # legend, top right
        x = area.right()
        for label, color in ((self.tr("validation loss"), VAL_COLOR), (self.tr("loss"), accent)):
            w = fm.horizontalAdvance(label)
            x -= w
            p.setPen(text)
            p.drawText(QPointF(x, top - 4), label)
            x -= 22
            p.setPen(QPen(color, 2))
            p.drawLine(QPointF(x, top - 4 - fm.ascent() / 3), QPointF(x + 16, top - 4 - fm.ascent() / 3))
            x -= 14
        p.end()


class ConversationPicker(QDialog):
    """Check the saved conversations to train on."""

    def __init__(self, conversations: list[Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Saved conversations"))
        layout = QVBoxLayout(self)
        note = QLabel(
            self.tr("Every finished answer in the checked conversations becomes a training example.")
        )
        note.setWordWrap(True)
        layout.addWidget(note)
        self.list = QListWidget()
        self.list.setObjectName("conversationPickerList")
        for conv in conversations:
            title = conv.title or self.tr("Untitled")
            item = QListWidgetItem(
                self.tr("%1 (%2 messages)").replace("%1", title).replace("%2", str(conv.message_count))
            )
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.list.addItem(item)
        layout.addWidget(self.list)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(420, 360)

    def chosen_ids(self) -> list[int]:
        out = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return out


class TrainingDialog(QDialog):
    """The training page (Tools → Train on your data (LoRA)…); one per window, kept while training."""

    use_model_requested = Signal(str, str)  # model path, LoRA adapter folder ("" for none)
    convert_requested = Signal(str)  # a GGUF file to convert into a transformers folder

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingDialog")
        self.setWindowTitle(self.tr("Train on your data (LoRA)"))
        self.setWindowFlag(Qt.WindowType.WindowMaximizeButtonHint, True)
        self._ctx = ctx
        self._job: TrainingJob | None = None
        self._job_name = ""
        self._cancelling = False
        self._background = False  # the user closed the page and let the job go on
        self._reap_ticks = 0
        self._check: Any = None  # the last JobCheck
        self._preview_task: Any = None
        self._preview_dirty = False
        self._merge_task: Any = None
        self._base = ""
        self._base_custom = False
        self._base_ok = False
        self._model_error = False  # the preview found the base model unusable
        self._data_errors = False  # unreadable rows, not to be skipped: the job would refuse
        self._name_edited = False
        self._adapter = ""
        self._adapter_base = ""
        self._merged = ""
        self._log_every = 1

        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(300)
        self._preview_timer.timeout.connect(self._run_preview)

        self._build()
        self.set_base_model(self._chat_model_path())
        self._update_buttons()
        self.resize(1040, 740)

    # ---- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        intro = QLabel(
            self.tr(
                "Teach the model your own question/answer pairs. The result is a small adapter "
                "applied on top of the model; the model itself is not changed."
            )
        )
        intro.setWordWrap(True)
        intro.setProperty("role", "hint")

        # data
        data_box = QGroupBox(self.tr("Training data"))
        self.data_list = QListWidget()
        self.data_list.setObjectName("trainingDataList")
        self.data_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.data_list.setMaximumHeight(90)
        self.add_files_button = QPushButton(self.tr("Add files…"))
        self.add_files_button.clicked.connect(self._on_add_files_clicked)
        self.add_conversations_button = QPushButton(self.tr("Add saved conversations…"))
        self.add_conversations_button.clicked.connect(self._on_add_conversations_clicked)
        self.remove_button = QPushButton(self.tr("Remove"))
        self.remove_button.clicked.connect(self._on_remove_clicked)
        row = QHBoxLayout()
        for b in (self.add_files_button, self.add_conversations_button, self.remove_button):
            row.addWidget(b)
        row.addStretch(1)
        formats = self.tr(
            "title##answer lines (.txt), JSONL/JSON (instruction/output, prompt/response, "
            "messages, content/summary), or CSV with question and answer columns."
        )
        self.add_files_button.setToolTip(formats)
        self.data_list.setToolTip(formats)
        self.preview_label = QLabel(self.tr("Add a data file to see what will be trained on."))
        self.preview_label.setToolTip(formats)
        self.preview_label.setObjectName("trainingPreviewLabel")
        self.preview_label.setWordWrap(True)
        self.problems = QTreeWidget()
        self.problems.setObjectName("trainingProblems")
        self.problems.setHeaderLabels([self.tr("Level"), self.tr("Where"), self.tr("Problem")])
        self.problems.setRootIsDecorated(False)
        self.problems.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.problems.setMinimumHeight(110)
        self.problems.setMaximumHeight(160)
        self.problems.hide()
        self.skip_bad = QCheckBox(self.tr("Skip rows that cannot be read"))
        self.skip_bad.toggled.connect(self._on_skip_bad_toggled)
        v = QVBoxLayout(data_box)
        v.addWidget(self.data_list)
        v.addLayout(row)
        v.addWidget(self.preview_label)
        v.addWidget(self.problems)
        v.addWidget(self.skip_bad)

        # base model
        model_box = QGroupBox(self.tr("Base model"))
        self.base_label = QLabel()
        self.base_label.setObjectName("trainingBaseLabel")
        self.base_label.setWordWrap(True)
        self.base_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.base_message = QLabel()
        self.base_message.setObjectName("trainingBaseMessage")
        self.base_message.setWordWrap(True)
        self.base_message.hide()
        self.convert_button = QPushButton(self.tr("Convert this GGUF…"))
        self.convert_button.setObjectName("trainingConvertButton")
        self.convert_button.clicked.connect(self._on_convert_clicked)
        self.convert_button.hide()
        self.choose_base_button = QPushButton(self.tr("Choose model folder…"))
        self.choose_base_button.clicked.connect(self._on_choose_base_clicked)
        self.chat_model_button = QPushButton(self.tr("Use the chat model"))
        self.chat_model_button.clicked.connect(self._on_chat_model_clicked)
        row = QHBoxLayout()
        for b in (self.convert_button, self.choose_base_button, self.chat_model_button):
            row.addWidget(b)
        row.addStretch(1)
        v = QVBoxLayout(model_box)
        v.addWidget(self.base_label)
        v.addWidget(self.base_message)
        v.addLayout(row)

        # settings
        settings_box = QGroupBox(self.tr("Adapter"))
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("trainingNameEdit")
        self.name_edit.textEdited.connect(self._on_name_edit_text_edited)
        self.name_edit.textChanged.connect(self._on_name_edit_text_changed)
        self.advanced_button = QToolButton()
        self.advanced_button.setText(self.tr("Advanced"))
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.toggled.connect(self._on_advanced_button_toggled)
        self.advanced = QWidget()
        adv = QFormLayout(self.advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        self.epochs_spin = QDoubleSpinBox()
        self.epochs_spin.setRange(0, 100)
        self.epochs_spin.setDecimals(1)
        self.epochs_spin.setSingleStep(0.5)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setRange(0, 1)
        self.lr_spin.setDecimals(6)
        self.lr_spin.setSingleStep(0.0001)
        self.rank_spin = QSpinBox()
        self.rank_spin.setRange(0, 256)
        self.max_len_spin = QSpinBox()
        self.max_len_spin.setRange(0, 32768)
        self.max_len_spin.setSingleStep(64)
        for spin in (self.epochs_spin, self.lr_spin, self.rank_spin, self.max_len_spin):
            spin.setSpecialValueText(self.tr("Auto"))
            spin.valueChanged.connect(self._on_setting_value_changed)
        adv.addRow(self.tr("Epochs"), self.epochs_spin)
        adv.addRow(self.tr("Learning rate"), self.lr_spin)
        adv.addRow(self.tr("LoRA rank"), self.rank_spin)
        adv.addRow(self.tr("Maximum length (tokens)"), self.max_len_spin)
        self.quantization_combo = QComboBox()
        self.quantization_combo.setObjectName("trainingQuantizationCombo")
        # its long item texts must not widen the (scrolling) settings column
        self.quantization_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.quantization_combo.setMinimumContentsLength(16)
        for label, value in (
            (self.tr("Auto"), "auto"),
            (self.tr("4 bits (QLoRA)"), "4bit"),
            (self.tr("Full precision"), "none"),
        ):
            self.quantization_combo.addItem(label, value)
        self.quantization_combo.setToolTip(
            self.tr(
                "QLoRA loads the base model's weights in 4 bits (bitsandbytes) and trains the adapter "
                "on top: about a quarter of the memory, somewhat slower; on an NVIDIA GPU or the CPU. "
                "Auto uses it only when full precision will not fit."
            )
        )
        self.quantization_combo.currentIndexChanged.connect(self._on_setting_value_changed)
        adv.addRow(self.tr("Base model weights"), self.quantization_combo)
        adv_note = QLabel(self.tr("Auto: picked for this computer and this data."))
        adv_note.setProperty("role", "hint")
        adv.addRow(adv_note)
        self.advanced.hide()
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("trainingEstimateLabel")
        self.estimate_label.setWordWrap(True)
        form = QFormLayout(settings_box)
        form.addRow(self.tr("Name"), self.name_edit)
        form.addRow(self.advanced_button)
        form.addRow(self.advanced)
        form.addRow(self.estimate_label)

        left_inner = QWidget()
        lv = QVBoxLayout(left_inner)
        lv.setContentsMargins(0, 0, 6, 0)
        lv.addWidget(intro)
        lv.addWidget(data_box)
        lv.addWidget(model_box)
        lv.addWidget(settings_box)
        lv.addStretch(1)
        left = QScrollArea()  # the left column scrolls on small screens rather than squeezing
        left.setWidgetResizable(True)
        left.setFrameShape(QFrame.Shape.NoFrame)
        left.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left.setWidget(left_inner)
        left.setMinimumWidth(440)

        # the job
        self.start_button = QPushButton(self.tr("Start training"))
        self.start_button.setObjectName("trainingStartButton")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.cancel_button = QPushButton(self.tr("Stop"))
        self.cancel_button.setObjectName("trainingCancelButton")
        self.cancel_button.setToolTip(self.tr("Stop after the current step and save a checkpoint"))
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.resume_button = QPushButton(self.tr("Resume"))
        self.resume_button.setObjectName("trainingResumeButton")
        self.resume_button.clicked.connect(self._on_resume_clicked)
        row = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.resume_button):
            row.addWidget(b)
        row.addStretch(1)
        self.resume_label = QLabel()
        self.resume_label.setObjectName("trainingResumeLabel")
        self.resume_label.setWordWrap(True)
        self.resume_label.setProperty("role", "hint")
        self.resume_label.hide()
        self.progress = QProgressBar()
        self.progress.setObjectName("trainingProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stats_label = QLabel(self.tr("Not started."))
        self.stats_label.setObjectName("trainingStatsLabel")
        self.stats_label.setWordWrap(True)
        self.plot = LossPlot()
        self.log_view = QPlainTextEdit()
        self.log_view.setObjectName("trainingLog")
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText(self.tr("What the training does is logged here."))
        self.use_button = QPushButton(self.tr("Use this adapter"))
        self.use_button.setObjectName("trainingUseButton")
        self.use_button.setToolTip(self.tr("Load the base model with this adapter for chatting"))
        self.use_button.clicked.connect(self._on_use_clicked)
        self.merge_button = QPushButton(self.tr("Merge into a new model"))
        self.merge_button.setObjectName("trainingMergeButton")
        self.merge_button.setToolTip(
            self.tr("Fold the adapter into a copy of the base model: a model folder that needs no adapter")
        )
        self.merge_button.clicked.connect(self._on_merge_clicked)
        self.use_merged_button = QPushButton(self.tr("Use the merged model"))
        self.use_merged_button.setObjectName("trainingUseMergedButton")
        self.use_merged_button.clicked.connect(self._on_use_merged_clicked)
        done_row = QHBoxLayout()
        for b in (self.use_button, self.merge_button, self.use_merged_button):
            b.hide()
            done_row.addWidget(b)
        done_row.addStretch(1)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(6, 0, 0, 0)
        rv.addLayout(row)
        rv.addWidget(self.resume_label)
        rv.addWidget(self.progress)
        rv.addWidget(self.stats_label)
        rv.addWidget(self.plot, 3)
        rv.addWidget(self.log_view, 2)
        rv.addLayout(done_row)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([470, 570])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # ---- what the page trains ----------------------------------------------------------------
    def _chat_model_path(self) -> str:
        m = self._ctx.settings.model
        return "" if m.backend == "openai" else str(m.path)

    @property
    def is_training(self) -> bool:
        return self._job is not None and self._job.final is None

    def data_files(self) -> list[str]:
        return [
            str(self.data_list.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.data_list.count())
        ]

    def add_data_files(self, paths: list[str], label: str = "") -> None:
        known = set(self.data_files())
        for path in paths:
            if path in known:
                continue
            item = QListWidgetItem(label or Path(path).name)
            item.setToolTip(path)
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.data_list.addItem(item)
        self._schedule_preview()
        self._update_buttons()

    def add_conversations(self, conversation_ids: list[int]) -> bool:
        """Save the chosen conversations' finished answers as a JSONL file (kept, so Resume reads the
        same data) and add it to the data."""
        from bubble_desktop.core.train.data import load_conversations

        ds = load_conversations(self._ctx.store, conversation_ids)
        if not ds.examples:
            self._show_message(self.tr("These conversations have no finished answers to train on."), True)
            return False
        folder = Path(self._ctx.paths.data_dir) / "training"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"conversations-{stamp}.jsonl"
        n = 2
        while path.exists():
            path = folder / f"conversations-{stamp}-{n}.jsonl"
            n += 1
        rows = [
            json.dumps(
                {
                    "prompt": e.prompt,
                    "response": e.answer,
                    "system": e.system,
                    "history": [list(h) for h in e.history],
                },
                ensure_ascii=False,
            )
            for e in ds.examples
        ]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        label = self.tr("%1 saved conversation(s): %2 answers").replace("%1", str(len(conversation_ids)))
        self.add_data_files([str(path)], label.replace("%2", str(len(ds.examples))))
        return True

    def set_base_model(self, path: str, custom: bool = False) -> None:
        """The model to train; says so when it cannot be trained (GGUF: offers the conversion)."""
        if self.is_training:
            return
        self._base = path
        self._base_custom = custom
        self.base_label.setText(path or self.tr("No model chosen."))
        self.base_label.setToolTip(path)
        message = ""
        gguf = bool(path) and is_gguf(path)
        if not path:
            if self._ctx.settings.model.backend == "openai":
                message = self.tr(
                    "The chat model runs on a server; training needs a model folder on this computer."
                )
            else:
                message = self.tr("Choose a transformers model folder to train.")
        elif gguf:
            message = self.tr(
                "GGUF models cannot be trained: LoRA needs the full weights in transformers format. "
                "Convert the GGUF once into a new model folder, then train that."
            )
        self._base_ok = not message
        self._model_error = False
        self.base_message.setText(message)
        self.base_message.setVisible(bool(message))
        _set_role(self.base_message, "error" if message else "")
        self.convert_button.setVisible(gguf)
        if not self._name_edited:
            self.name_edit.setText(self._default_name())
        self._schedule_preview()
        self._update_buttons()

    def _default_name(self) -> str:
        stem = Path(self._base).stem if self._base else "adapter"
        base = re.sub(r"[^\w.\- ]", "-", stem).strip(" .-")[:60] or "adapter"
        name = f"{base}-lora"
        n = 2
        while adapter_dir(name).exists() or partial_dir(name).exists():
            name = f"{base}-lora-{n}"
            n += 1
        return name

    def settings(self) -> LoraSettings:
        """What Start would train (zeros: picked for this machine by the job)."""
        ctx = self._ctx
        consent = getattr(ctx, "consent", None)
        trusted = bool(consent is not None and self._base and consent.is_trusted(self._base))
        return LoraSettings(
            model=self._base,
            data=self.data_files(),
            name=self.name_edit.text().strip(),
            epochs=self.epochs_spin.value(),
            lr=self.lr_spin.value(),
            rank=self.rank_spin.value(),
            max_len=self.max_len_spin.value(),
            quantization=str(self.quantization_combo.currentData() or "auto"),
            skip_bad_rows=self.skip_bad.isChecked(),
            device=ctx.settings.model.device,
            trust_remote_code=trusted,
            system_prompt=ctx.settings.sampling.system_prompt,
        )

    # ---- preview ----------------------------------------------------------------------------
    def _schedule_preview(self) -> None:
        self._preview_timer.start()

    @Slot()
    def _run_preview(self) -> None:
        if not self.data_files():
            self._check = None
            self._data_errors = False
            self.preview_label.setText(self.tr("Add a data file to see what will be trained on."))
            self.problems.clear()
            self.problems.hide()
            self.estimate_label.clear()
            return
        if self._preview_task is not None:
            self._preview_dirty = True
            return
        from bubble_desktop.core.train.lora import check_job
        from bubble_desktop.ui.workers import BackgroundTask

        settings = self.settings()
        if not self._base_ok:
            settings.model = ""  # rows and problems only
        self._preview_dirty = False
        self.preview_label.setText(self.tr("Reading the data…"))
        task = BackgroundTask(lambda _progress, _cancel: check_job(settings), "bubble-train-preview", self)
        task.succeeded.connect(self._on_preview_task_succeeded)
        task.failed.connect(self._on_preview_task_failed)
        task.finished.connect(self._on_preview_task_finished)
        self._preview_task = task
        task.start()

    @Slot(object)
    def _on_preview_task_succeeded(self, check: Any) -> None:
        self._check = check
        pv = check.preview
        if pv is not None:
            text = (
                self.tr("%1 rows understood, %2 usable. Tokens per row: mean %3, max %4.")
                .replace("%1", str(check.examples))
                .replace("%2", str(pv.usable))
                .replace("%3", f"{pv.tokens_mean:g}")
                .replace("%4", str(pv.tokens_max))
            )
        else:
            text = self.tr("%1 rows understood.").replace("%1", str(check.examples))
        errors = [p for p in check.problems if p.level == "error"]
        warnings = [p for p in check.problems if p.level != "error"]
        self._data_errors = bool(errors) and not self.skip_bad.isChecked()
        if errors:
            text += " " + self.tr("%1 rows cannot be read.").replace("%1", str(len(errors)))
            if not self.skip_bad.isChecked():
                text += " " + self.tr("Fix them, or tick “Skip rows that cannot be read”.")
        if warnings:
            text += " " + self.tr("%1 warnings.").replace("%1", str(len(warnings)))
        self.preview_label.setText(text)
        _set_role(self.preview_label, "error" if errors and not self.skip_bad.isChecked() else "")
        self.problems.clear()
        for prob in check.problems[:MAX_PROBLEM_ROWS]:
            where = f"{Path(prob.file).name}:{prob.row}" if prob.row else Path(prob.file).name
            level = self.tr("Error") if prob.level == "error" else self.tr("Warning")
            item = QTreeWidgetItem([level, where, prob.message])
            item.setToolTip(2, prob.message)
            if prob.level == "error":
                item.setForeground(0, QBrush(QColor("#d93a3a")))
            self.problems.addTopLevelItem(item)
        self.problems.setVisible(bool(check.problems))
        self.problems.resizeColumnToContents(0)
        self.problems.resizeColumnToContents(1)
        self._model_error = bool(check.model_error and self._base_ok)
        if self._model_error:
            self.base_message.setText(f"{check.model_error}\n{check.model_hint}".strip())
            self.base_message.show()
            _set_role(self.base_message, "error")
        plan = check.plan
        if plan is None:
            self.estimate_label.clear()
        else:
            s = plan.settings
            self.epochs_spin.setSpecialValueText(self.tr("Auto (%1)").replace("%1", f"{s.epochs:g}"))
            self.lr_spin.setSpecialValueText(self.tr("Auto (%1)").replace("%1", f"{s.lr:g}"))
            self.rank_spin.setSpecialValueText(self.tr("Auto (%1)").replace("%1", str(s.rank)))
            self.max_len_spin.setSpecialValueText(self.tr("Auto (%1)").replace("%1", str(s.max_len)))
            est = plan.estimate.to_dict()
            line = (
                self.tr("Memory: about %1 MB needed, %2 MB free on %3.")
                .replace("%1", f"{est['need_mb']:,}")
                .replace("%2", f"{est['available_mb']:,}")
                .replace("%3", plan.device)
            )
            if plan.qlora:
                line += " " + self.tr("The base model loads in 4 bits (QLoRA).")
            if plan.estimate.fits:
                line += " " + self.tr("It fits.")
            else:
                line += " " + self.tr(
                    "It will not fit: lower the maximum length, use a smaller model, or close other programs."
                )
            self.estimate_label.setText(line)
            _set_role(self.estimate_label, "" if plan.estimate.fits else "error")
        self._update_buttons()

    @Slot(str, str)
    def _on_preview_task_failed(self, message: str, hint: str) -> None:
        self._check = None
        self.preview_label.setText(f"{message}\n{hint}".strip())
        _set_role(self.preview_label, "error")
        self.problems.clear()
        self.problems.hide()
        self._update_buttons()

    @Slot()
    def _on_preview_task_finished(self) -> None:
        self._preview_task = None
        if self._preview_dirty:
            self._run_preview()

    # ---- user actions --------------------------------------------------------------------------
    @Slot()
    def _on_add_files_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            self.tr("Choose training data"),
            "",
            self.tr("Training data (%1);;All files (*)").replace("%1", DATA_FILTER),
        )
        if paths:
            self.add_data_files(paths)

    @Slot()
    def _on_add_conversations_clicked(self) -> None:
        conversations = self._ctx.store.list_conversations()
        if not conversations:
            self._show_message(self.tr("There are no saved conversations yet."), True)
            return
        picker = ConversationPicker(conversations, self)
        if picker.exec() == QDialog.DialogCode.Accepted and picker.chosen_ids():
            self.add_conversations(picker.chosen_ids())

    @Slot()
    def _on_remove_clicked(self) -> None:
        for item in self.data_list.selectedItems():
            self.data_list.takeItem(self.data_list.row(item))
        self._schedule_preview()
        self._update_buttons()

    @Slot(bool)
    def _on_skip_bad_toggled(self, checked: bool) -> None:
        problems = self._check.problems if self._check is not None else []
        self._data_errors = not checked and any(p.level == "error" for p in problems)
        self._schedule_preview()
        self._update_buttons()

    @Slot()
    def _on_setting_value_changed(self) -> None:
        self._schedule_preview()

    @Slot(bool)
    def _on_advanced_button_toggled(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    @Slot(str)
    def _on_name_edit_text_edited(self, _text: str) -> None:
        self._name_edited = True

    @Slot(str)
    def _on_name_edit_text_changed(self, _text: str) -> None:
        self._refresh_resume()
        self._update_buttons()

    @Slot()
    def _on_convert_clicked(self) -> None:
        self.convert_requested.emit(self._base)
        self._log(self.tr("Converting %1 into a transformers model folder…").replace("%1", self._base))
        self._base_custom = False  # the converted model becomes the chat model; train that

    @Slot()
    def _on_choose_base_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Choose the model folder to train"))
        if folder:
            self.set_base_model(folder, custom=True)

    @Slot()
    def _on_chat_model_clicked(self) -> None:
        self.set_base_model(self._chat_model_path())

    @Slot(object)
    def _on_window_model_ready(self, _info: Any) -> None:
        """The chat model changed (e.g. a converted GGUF was loaded): train that unless another was chosen."""
        if not self._base_custom and not self.is_training and self._chat_model_path() != self._base:
            self.set_base_model(self._chat_model_path())

    @Slot()
    def _on_start_clicked(self) -> None:
        self.start()

    @Slot()
    def _on_resume_clicked(self) -> None:
        self.start(resume=True)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        self.cancel()

    @Slot()
    def _on_use_clicked(self) -> None:
        if self._adapter:
            self.use_model_requested.emit(self._adapter_base, self._adapter)
            self._log(
                self.tr("Loading %1 with the adapter %2.")
                .replace("%1", self._adapter_base)
                .replace("%2", self._adapter)
            )

    @Slot()
    def _on_use_merged_clicked(self) -> None:
        if self._merged:
            self.use_model_requested.emit(self._merged, "")
            self._log(self.tr("Loading the merged model %1.").replace("%1", self._merged))

    @Slot()
    def _on_merge_clicked(self) -> None:
        if not self._adapter or self._merge_task is not None:
            return
        from bubble_desktop.core.train.lora import merge_adapter
        from bubble_desktop.ui.workers import BackgroundTask

        models = Path(self._ctx.paths.models_dir)
        stem = f"{Path(self._adapter_base).name}-{Path(self._adapter).name}"
        out = models / stem
        n = 2
        while out.exists():
            out = models / f"{stem}-{n}"
            n += 1
        base, adapter = self._adapter_base, self._adapter
        task = BackgroundTask(lambda _p, _c: merge_adapter(base, adapter, out), "bubble-lora-merge", self)
        task.succeeded.connect(self._on_merge_task_succeeded)
        task.failed.connect(self._on_merge_task_failed)
        self._merge_task = task
        self.merge_button.setEnabled(False)
        self._log(self.tr("Merging the adapter into a copy of the model: %1…").replace("%1", str(out)))
        task.start()

    @Slot(object)
    def _on_merge_task_succeeded(self, folder: Any) -> None:
        self._merge_task = None
        self._merged = str(folder)
        self._log(self.tr("Merged model saved in %1.").replace("%1", self._merged))
        self.use_merged_button.show()
        self.merge_button.setEnabled(True)

    @Slot(str, str)
    def _on_merge_task_failed(self, message: str, hint: str) -> None:
        self._merge_task = None
        self._log(self.tr("Merging failed: %1").replace("%1", f"{message} {hint}".strip()))
        self._show_message(message, True)
        self.merge_button.setEnabled(True)

    # ---- the job ---------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> bool:
        """Start (or resume) the job in its child process; False when something stops it first
        (said on the page)."""
        if self.is_training or self._job is not None:
            return False
        try:
            name = check_name(self.name_edit.text())
        except UserFacingError as exc:
            self._show_message(f"{exc.message} {exc.hint}".strip(), True)
            return False
        restart = False
        if not resume:
            if not self._base_ok:
                self._show_message(self.base_message.text(), True)
                return False
            if not self.data_files():
                self._show_message(self.tr("Add the data to train on first."), True)
                return False
            if adapter_dir(name).exists():
                self._show_message(
                    self.tr("An adapter named “%1” already exists. Choose another name.").replace("%1", name),
                    True,
                )
                return False
            if (partial_dir(name) / "job.json").is_file():
                answer = QMessageBox.question(
                    self,
                    self.tr("Unfinished training"),
                    self.tr(
                        "An unfinished training named “%1” exists. Start over (its checkpoints are "
                        "deleted)? Choose No and press Resume to continue it instead."
                    ).replace("%1", name),
                )
                if answer != QMessageBox.StandardButton.Yes:
                    return False
                restart = True
        settings = self.settings()
        settings.name = name
        self.plot.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._adapter = self._merged = ""
        for b in (self.use_button, self.merge_button, self.use_merged_button):
            b.hide()
        if resume:
            self._load_checkpoint_history(name)
        self._job = TrainingJob(settings, resume=resume, restart=restart)
        self._job_name = name
        self._cancelling = False
        self._background = False
        self._reap_ticks = 0
        try:
            self._job.start()
        except Exception as exc:  # spawning failed: say so, keep the page usable
            log.exception("the training process could not be started")
            self._job = None
            self._show_message(self.tr("The training could not be started: %1").replace("%1", str(exc)), True)
            return False
        self._log((self.tr("Resuming “%1”…") if resume else self.tr("Starting “%1”…")).replace("%1", name))
        self._show_message(self.tr("Starting the training process…"), False)
        self._timer.start()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        """Ask the job to stop after the current step; it saves a checkpoint Resume continues from."""
        if self._job is not None and self._job.final is None and not self._cancelling:
            self._cancelling = True
            self._job.cancel()
            self._log(self.tr("Stopping after this step; a checkpoint is saved…"))
            self._update_buttons()

    def _load_checkpoint_history(self, name: str) -> None:
        ckpt = latest_checkpoint(name)
        if ckpt is None:
            return
        try:
            state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        history = state.get("history", {})
        self.plot.set_total(int(state.get("total_steps", 0)))
        for step, loss in history.get("loss", []):
            self.plot.add_loss(int(step), float(loss))
        for step, loss in history.get("val_loss", []):
            self.plot.add_val(int(step), float(loss))

    @Slot()
    def _on_timer_timeout(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        if job.final is None:
            for ev in job.poll(0):
                self._handle_event(ev)
            return
        # the job has ended: let the child exit by itself (it flushes its queue), then reap it
        self._reap_ticks += 1
        if job.wait(0) is not None or self._reap_ticks > 5000 // POLL_MS:
            job.close()
            self._job = None
            self._timer.stop()
            self._update_buttons()

    def _handle_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "status":
            text = self._status_text(str(ev.get("message", "")))
            self._log(text)
            self.stats_label.setText(text)
        elif kind == "preview":
            self._log(
                self.tr("Data: %1 examples, %2 tokens on average (max %3).")
                .replace("%1", str(ev.get("usable")))
                .replace("%2", f"{ev.get('tokens_mean', 0):g}")
                .replace("%3", str(ev.get("tokens_max")))
            )
        elif kind == "estimate":
            self._log(
                self.tr("Memory: about %1 MB needed, %2 MB free on %3.")
                .replace("%1", f"{ev.get('need_mb', 0):,}")
                .replace("%2", f"{ev.get('available_mb', 0):,}")
                .replace("%3", str(ev.get("device", "")))
            )
        elif kind == "start":
            total = int(ev.get("total_steps", 0))
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(int(ev.get("resumed_from", 0)))
            self.plot.set_total(total)
            self._log_every = max(1, total // 10)
            text = (
                self.tr("Training %1 steps on %2 examples (%3 for validation) on %4.")
                .replace("%1", str(total))
                .replace("%2", str(ev.get("train_examples")))
                .replace("%3", str(ev.get("val_examples")))
                .replace("%4", str(ev.get("device")))
            )
            if ev.get("resumed_from"):
                text += " " + self.tr("Resumed at step %1.").replace("%1", str(ev["resumed_from"]))
            self._log(text)
        elif kind == "step":
            step, total = int(ev["step"]), int(ev["total_steps"])
            self.progress.setValue(step)
            self.plot.add_loss(step, float(ev["loss"]))
            val = self.plot.val_points[-1][1] if self.plot.val_points else None
            text = (
                self.tr("Step %1 of %2 · loss %3 · %4 tokens/s · %5 left")
                .replace("%1", str(step))
                .replace("%2", str(total))
                .replace("%3", f"{float(ev['loss']):.3f}")
                .replace("%4", f"{float(ev.get('tokens_per_s', 0)):,.0f}")
                .replace("%5", fmt_duration(float(ev.get("eta_s", 0))))
            )
            if val is not None:
                text += " · " + self.tr("validation %1").replace("%1", f"{val:.3f}")
            self.stats_label.setText(text)
            _set_role(self.stats_label, "")
            if step == 1 or step % self._log_every == 0:
                self._log(text)
        elif kind == "eval":
            self.plot.add_val(int(ev["step"]), float(ev["val_loss"]))
            self._log(
                self.tr("Validation loss at step %1: %2")
                .replace("%1", str(ev["step"]))
                .replace("%2", f"{float(ev['val_loss']):.3f}")
            )
        elif kind == "checkpoint":
            self._log(self.tr("Checkpoint saved at step %1.").replace("%1", str(ev.get("step"))))
        elif kind == "done":
            card = ev.get("card", {})
            self._adapter = str(ev.get("adapter", ""))
            self._adapter_base = str(card.get("base_model", {}).get("path", self._base))
            self.progress.setValue(self.progress.maximum())
            text = (
                self.tr("Done: loss %1 → %2, validation %3. The adapter is in %4.")
                .replace("%1", _num(card.get("first_loss")))
                .replace("%2", _num(card.get("final_loss")))
                .replace("%3", _num(card.get("final_val_loss")))
                .replace("%4", self._adapter)
            )
            self._log(text)
            self._show_message(text, False)
            for b in (self.use_button, self.merge_button):
                b.show()
            self.merge_button.setEnabled(True)
            self._name_edited = False
            self.name_edit.setText(self._default_name())  # this name is taken now: the next run's
            self._finished_in_background()
        elif kind == "cancelled":
            text = self.tr("Stopped at step %1. Resume continues from there.").replace(
                "%1", str(ev.get("step"))
            )
            self._log(text)
            self._show_message(text, False)
        elif kind == "error":
            message = str(ev.get("message", ""))
            hint = str(ev.get("hint") or "")
            self._log(self.tr("Error: %1").replace("%1", f"{message} {hint}".strip()))
            self._show_message(f"{message}\n{hint}".strip(), True)
            self._finished_in_background()
        if kind in ("done", "cancelled", "error"):
            self._cancelling = False
            self._refresh_resume()
            self._update_buttons()

    def _finished_in_background(self) -> None:
        if self._background and not self.isVisible():
            self.show()
            self.raise_()
        self._background = False

    def _status_text(self, message: str) -> str:
        prefix = "Loading the model on "
        if message.startswith(prefix):
            return self.tr("Loading the model on %1").replace("%1", message.removeprefix(prefix))
        known = {
            "Reading the training data": self.tr("Reading the training data"),
            "Loading the tokenizer": self.tr("Loading the tokenizer"),
            "Saving the adapter": self.tr("Saving the adapter"),
        }
        return known.get(message, message)

    # ---- state shown ---------------------------------------------------------------------------------
    def _refresh_resume(self) -> None:
        name = self.name_edit.text().strip()
        can = bool(name) and not self.is_training and _has_partial(name)
        if can:
            ckpt = latest_checkpoint(name)
            if ckpt is not None:
                step = int(ckpt.name.removeprefix("step-"))
                text = self.tr("An unfinished training named “%1” can be resumed from step %2.")
                text = text.replace("%1", name).replace("%2", str(step))
            else:
                text = self.tr(
                    "An unfinished training named “%1” has no checkpoint yet: Resume starts it again "
                    "with its saved settings."
                ).replace("%1", name)
            self.resume_label.setText(text)
        self.resume_label.setVisible(can)

    def _update_buttons(self) -> None:
        running = self._job is not None
        name = self.name_edit.text().strip()
        self.start_button.setEnabled(
            not running
            and self._base_ok
            and not self._model_error
            and not self._data_errors
            and bool(self.data_files())
        )
        self.cancel_button.setEnabled(self.is_training and not self._cancelling)
        self.resume_button.setEnabled(not running and bool(name) and _has_partial(name))
        for w in (
            self.data_list,
            self.add_files_button,
            self.add_conversations_button,
            self.remove_button,
            self.skip_bad,
            self.choose_base_button,
            self.chat_model_button,
            self.convert_button,
            self.name_edit,
            self.advanced,
        ):
            w.setEnabled(not running)

    def _show_message(self, text: str, error: bool) -> None:
        self.stats_label.setText(text)
        _set_role(self.stats_label, "error" if error else "")

    def _log(self, text: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    # ---- closing ---------------------------------------------------------------------------------------
    def reject(self) -> None:  # Esc and the window's close button both come here
        if self.is_training and not self._cancelling:
            choice = self._ask_keep_or_stop()
            if choice == "back":
                return
            if choice == "stop":
                self.cancel()
            else:
                self._background = True
                self._log(self.tr("Training goes on in the background; this page opens again when it ends."))
        super().reject()

    def _ask_keep_or_stop(self) -> str:
        answer = ask(
            self,
            name="trainingCloseBox",
            title=self.tr("Training is running"),
            text=self.tr("The training is still running."),
            informative=self.tr(
                "Keep it training in the background (this page opens again when it ends), or stop it now: "
                "a checkpoint is saved and Resume continues from it."
            ),
            choices=[
                ("keep", self.tr("Keep training in the background"), QMessageBox.ButtonRole.AcceptRole),
                ("stop", self.tr("Stop and save a checkpoint"), QMessageBox.ButtonRole.DestructiveRole),
            ],
            default="keep",
        )
        return answer or "back"

    def shutdown(self, wait_s: float = 5.0) -> None:
        """The app is quitting: stop the job with a checkpoint (waiting up to ``wait_s``; the last
        periodic checkpoint stays resumable otherwise) and end the background tasks."""
        self._timer.stop()
        self._preview_timer.stop()
        job = self._job
        if job is not None:
            if job.final is None:
                job.cancel()
                deadline = time.monotonic() + wait_s
                while job.final is None and time.monotonic() < deadline:
                    job.poll(0.1)
            job.close()
            self._job = None
        for task in (self._preview_task, self._merge_task):
            if task is not None:
                task.wait(3000)


def _has_partial(name: str) -> bool:
    try:
        return (partial_dir(name) / "job.json").is_file()
    except Exception:  # a name that cannot be a path yet
        return False


def _num(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, (int, float)) else "–"
