"""The chat pane: conversation, the question box, Send/Stop, knowledge-base choice and the web toggle.

It only shows things and says what the user asked for (signals); the main window talks to the
inference controller and the services.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.ui.chat_view import ChatView, MessageWidget


class ChatInput(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops (or cancels an edit)."""

    submitted = Signal()
    escape_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatInput")
        self.setTabChangesFocus(True)
        self.setFixedHeight(72)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.escape_pressed.emit()
            return
        super().keyPressEvent(event)


class ChatPane(QWidget):
    """Everything on the Chat tab."""

    send_requested = Signal(str)
    edit_submitted = Signal(object, str)  # message id, new text
    stop_requested = Signal()
    regenerate_requested = Signal(object)  # MessageWidget
    options_changed = Signal()  # knowledge bases or web toggle
    source_activated = Signal(object)  # SourceView
    version_requested = Signal(object, int)  # MessageWidget, version to show

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPane")
        self._busy = False
        self._editing: MessageWidget | None = None
        self._kb_names: list[str] = []
        self._selected_kbs: set[str] = set()

        # ---- top bar: title, knowledge, web ------------------------------------------
        self.title_label = QLabel(self.tr("New chat"))
        self.title_label.setObjectName("chatTitle")
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title_label.setFont(font)

        self.kb_button = QToolButton()
        self.kb_button.setObjectName("kbButton")
        self.kb_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.kb_button.setToolTip(self.tr("Knowledge bases this chat answers from"))
        self.kb_menu = QMenu(self.kb_button)
        self.kb_button.setMenu(self.kb_menu)

        self.web_button = QToolButton()
        self.web_button.setObjectName("webButton")
        self.web_button.setCheckable(True)
        self.web_button.setText(self.tr("Web search"))
        self.web_button.setToolTip(
            self.tr("Search the web for each question. When on, your question leaves this computer.")
        )
        self.web_button.toggled.connect(self._on_web_button_toggled)
        self.online_label = QLabel(self.tr("● Online"))
        self.online_label.setObjectName("onlineIndicator")
        self.online_label.setStyleSheet("color: #d97706; font-weight: bold;")
        self.online_label.setToolTip(
            self.tr("Web search is on: questions in this chat are sent to DuckDuckGo.")
        )
        self.online_label.setVisible(False)

        top = QHBoxLayout()
        top.setContentsMargins(16, 8, 16, 4)
        top.addWidget(self.title_label, 1)
        top.addWidget(self.kb_button)
        top.addWidget(self.web_button)
        top.addWidget(self.online_label)

        # ---- conversation ------------------------------------------------------------
        self.view = ChatView()
        self.view.regenerate_requested.connect(self.regenerate_requested)
        self.view.edit_requested.connect(self._on_view_edit_requested)
        self.view.source_activated.connect(self.source_activated)
        self.view.version_requested.connect(self.version_requested)
        self.empty_label = QLabel(self.tr("Ask anything. Answers are written on this computer."))
        self.empty_label.setObjectName("emptyHint")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #8a8f98; font-size: 14pt;")

        # ---- editing banner + input --------------------------------------------------
        self.edit_banner = QLabel(self.tr("Editing an earlier question: Enter sends it again, Esc cancels."))
        self.edit_banner.setObjectName("editBanner")
        self.edit_banner.setVisible(False)
        self.input = ChatInput()
        self.input.setPlaceholderText(self.tr("Ask a question… (Enter to send, Shift+Enter for a new line)"))
        self.input.submitted.connect(self._on_input_submitted)
        self.input.escape_pressed.connect(self._on_input_escape_pressed)
        self.send_button = QPushButton(self.tr("Send"))
        self.send_button.setObjectName("sendButton")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self._on_input_submitted)
        self.stop_button = QPushButton(self.tr("Stop"))
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip(self.tr("Stop the answer (Esc)"))
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.setVisible(False)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        input_frame = QFrame()
        input_frame.setObjectName("inputFrame")
        frame_layout = QVBoxLayout(input_frame)
        frame_layout.setContentsMargins(16, 6, 16, 12)
        frame_layout.addWidget(self.edit_banner)
        frame_layout.addLayout(bottom)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.empty_label, 1)
        layout.addWidget(self.view, 1)
        layout.addWidget(input_frame)
        self.set_knowledge_bases([])
        self._update_empty()

    # ---- state ---------------------------------------------------------------------------
    @property
    def kb_names(self) -> tuple[str, ...]:
        return tuple(n for n in self._kb_names if n in self._selected_kbs)

    @property
    def web_enabled(self) -> bool:
        return self.web_button.isChecked()

    @property
    def busy(self) -> bool:
        return self._busy

    def set_title(self, title: str) -> None:
        self.title_label.setText(title or self.tr("New chat"))

    def set_knowledge_bases(self, names: Iterable[str]) -> None:
        self._kb_names = list(names)
        self._selected_kbs &= set(self._kb_names)
        self._rebuild_kb_menu()

    def set_options(self, kb_names: Iterable[str], web: bool) -> None:
        """Show a conversation's saved choices (no options_changed emitted)."""
        self._selected_kbs = set(kb_names) & set(self._kb_names) if self._kb_names else set(kb_names)
        self._rebuild_kb_menu()
        self.web_button.blockSignals(True)
        self.web_button.setChecked(web)
        self.web_button.blockSignals(False)
        self.online_label.setVisible(web)

    def _rebuild_kb_menu(self) -> None:
        self.kb_menu.clear()
        if not self._kb_names:
            empty = QAction(self.tr("No knowledge bases yet: create one on the Knowledge tab"), self.kb_menu)
            empty.setEnabled(False)
            self.kb_menu.addAction(empty)
        for name in self._kb_names:
            action = QAction(name, self.kb_menu)
            action.setCheckable(True)
            action.setChecked(name in self._selected_kbs)
            action.setData(name)
            action.toggled.connect(self._on_kb_action_toggled)
            self.kb_menu.addAction(action)
        self._update_kb_button()

    def _update_kb_button(self) -> None:
        chosen = self.kb_names
        if not chosen:
            self.kb_button.setText(self.tr("Knowledge: none"))
        elif len(chosen) == 1:
            self.kb_button.setText(self.tr("Knowledge: %1").replace("%1", chosen[0]))
        else:
            self.kb_button.setText(self.tr("Knowledge: %n bases", "", len(chosen)))

    def set_busy(self, busy: bool) -> None:
        """While an answer streams: Stop instead of Send; nothing else to edit or regenerate."""
        self._busy = busy
        self.stop_button.setVisible(busy)
        self.send_button.setEnabled(not busy)
        self.view.update_actions(busy)

    def _update_empty(self) -> None:
        has = bool(self.view.messages)
        self.empty_label.setVisible(not has)
        self.view.setVisible(has)

    def clear(self) -> None:
        self.cancel_edit()
        self.view.clear()
        self._update_empty()

    def add_message(self, role: str, text: str = "", message_id: int | None = None) -> MessageWidget:
        widget = self.view.add_message(role, text, message_id)
        self._update_empty()
        return widget

    def remove_from(self, widget: MessageWidget) -> None:
        self.view.remove_from(widget)
        self._update_empty()

    # ---- editing -------------------------------------------------------------------------
    @Slot(object)
    def _on_view_edit_requested(self, widget: MessageWidget) -> None:
        if self._busy:
            return
        self._editing = widget
        self.edit_banner.setVisible(True)
        self.input.setPlainText(widget.text)
        self.input.setFocus()

    @property
    def editing(self) -> MessageWidget | None:
        return self._editing

    def cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.edit_banner.setVisible(False)
            self.input.clear()

    # ---- input ---------------------------------------------------------------------------
    @Slot()
    def _on_input_submitted(self) -> None:
        if self._busy:
            return
        text = self.input.toPlainText().strip()
        if not text:
            return
        editing = self._editing
        self.input.clear()
        self._editing = None
        self.edit_banner.setVisible(False)
        if editing is not None and editing.message_id is not None:
            self.edit_submitted.emit(editing, text)
        else:
            self.send_requested.emit(text)

    @Slot()
    def _on_input_escape_pressed(self) -> None:
        if self._busy:
            self.stop_requested.emit()
        else:
            self.cancel_edit()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape and self._busy:
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)

    @Slot(bool)
    def _on_web_button_toggled(self, on: bool) -> None:
        self.online_label.setVisible(on)
        self.options_changed.emit()

    @Slot(bool)
    def _on_kb_action_toggled(self, on: bool) -> None:
        action = self.sender()
        name = action.data() if isinstance(action, QAction) else None
        if not name:
            return
        if on:
            self._selected_kbs.add(name)
        else:
            self._selected_kbs.discard(name)
        self._update_kb_button()
        self.options_changed.emit()
