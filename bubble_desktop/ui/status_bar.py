"""Status bar pieces: model state (not loaded / loading with progress / ready on DEVICE), speed, tokens."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from bubble_desktop.core.i18n import localize
from bubble_desktop.core.llm.base import GenerationStats, ModelInfo

MODEL_LABEL_MAX_PX = 460  # beyond this the model state is elided (the tooltip has it all)
NOTICE_MS = 20000  # how long a model's notice is shown in words when it loads


class ModelStatusBar(QStatusBar):
    """The window's status bar; the main window calls its ``show_*`` methods."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelStatusBar")
        self.model_label = QLabel()
        self.model_label.setObjectName("modelState")
        self.progress = QProgressBar()
        self.progress.setObjectName("loadProgress")
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(160)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self._loading = ""
        self.speed_label = QLabel()
        self.speed_label.setObjectName("speed")
        self.tokens_label = QLabel()
        self.tokens_label.setObjectName("tokens")
        self.api_label = QLabel()
        self.api_label.setObjectName("apiState")
        self.api_label.setContentsMargins(12, 0, 4, 0)  # apart from the token counts
        self.api_label.setVisible(False)
        self.addWidget(self.model_label)
        self.addWidget(self.progress)
        self.addPermanentWidget(self.speed_label)
        self.addPermanentWidget(self.tokens_label)
        self.addPermanentWidget(self.api_label)
        self.show_not_loaded()

    def show_not_loaded(self) -> None:
        self.model_label.setText(self.tr("Model: not loaded"))
        self.model_label.setToolTip("")
        self.progress.setVisible(False)

    def _set_model_text(self, text: str, tooltip: str | None = None) -> None:
        """The model state, elided in the middle when it is too long; the tooltip keeps it whole."""
        metrics = self.model_label.fontMetrics()
        shown = metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, MODEL_LABEL_MAX_PX)
        self.model_label.setText(shown)
        self.model_label.setToolTip(tooltip if tooltip is not None else (text if shown != text else ""))

    def show_loading(self, name: str) -> None:
        self._loading = self.tr("Loading %1…").replace("%1", name)
        self._set_model_text(self._loading)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.setVisible(True)

    def show_progress(self, fraction: float, what: str) -> None:
        # the stage goes beside the model name, where it has room ("Loading the librari…" in the bar)
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 100))
        stage = localize(what)
        self.progress.setToolTip(stage)
        if stage and self._loading:
            text = self.tr("%1 (%2)").replace("%1", self._loading).replace("%2", stage)
            self._set_model_text(text, text)

    def show_ready(self, info: ModelInfo) -> None:
        self.progress.setVisible(False)
        # llama.cpp: "CPU · 4 threads", "CUDA0 · 33/33 layers" (core's text, in the user's language)
        where = localize(info.runs_on) if info.runs_on else info.device.upper()
        text = self.tr("%1 · ready on %2").replace("%1", info.name).replace("%2", where)
        tooltip = (
            self.tr("%1\nPrecision: %2\nContext window: %3 tokens")
            .replace("%1", info.path)
            .replace("%2", info.dtype)
            .replace("%3", str(info.context_window))
        )
        notices = [f"⚠ {localize(n)}" for n in info.notices]  # e.g. the chat template was unusable
        if notices:  # a mark after the ready state, the words in its tooltip
            text += " ⚠"
            tooltip += "\n\n" + "\n".join(notices)
        self._set_model_text(text, tooltip)
        if notices:  # and in words for a while (a temporary message covers the ready state)
            self.showMessage(self._fit(" ".join(notices)), NOTICE_MS)

    def _fit(self, message: str) -> str:
        """``message`` elided to the room beside the permanent widgets: a long English notice was
        cut mid-word at the window's edge (its tooltip keeps it whole)."""
        permanent = [w.geometry().left() for w in (self.speed_label, self.tokens_label) if w.isVisible()]
        room = min(permanent, default=self.width()) - 24  # where the permanent widgets start, a margin
        return self.fontMetrics().elidedText(message, Qt.TextElideMode.ElideRight, max(room, 200))

    def show_api(self, address: str) -> None:
        """ "API on 127.0.0.1:8765" while the local API server runs; hidden when it is off."""
        self.api_label.setText(self.tr("API on %1").replace("%1", address) if address else "")
        self.api_label.setToolTip(
            self.tr("OpenAI-compatible API: http://%1/v1 (Settings → API server)").replace("%1", address)
            if address
            else ""
        )
        self.api_label.setVisible(bool(address))

    def show_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self.model_label.setText(self.tr("Model: not loaded (%1)").replace("%1", message[:80]))
        self.model_label.setToolTip(message)

    def show_stats(self, stats: GenerationStats | None) -> None:
        if stats is None:
            return
        if stats.tokens_per_s:
            self.speed_label.setText(self.tr("%1 tokens/s").replace("%1", f"{stats.tokens_per_s:.1f}"))
        if stats.prompt_tokens > 0:
            text = (
                self.tr("prompt %1 · answer %2 tokens")
                .replace("%1", str(stats.prompt_tokens))
                .replace("%2", str(stats.completion_tokens))
            )
        else:  # not known: llama.cpp sends no timings after a stop
            text = self.tr("answer %1 tokens").replace("%1", str(stats.completion_tokens))
        self.tokens_label.setText(text)
