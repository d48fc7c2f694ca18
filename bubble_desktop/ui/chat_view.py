"""The conversation: one widget per message in a scroll area, answers rendered as Markdown.

An answer being streamed keeps a cursor where its still-open tail starts; each update removes
the old tail, appends the blocks that just closed (frozen for good) and inserts the new tail,
so the work per update is proportional to the tail, not to the whole answer.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QEvent, QSizeF, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bubble_desktop.core.i18n import localize
from bubble_desktop.ui.markdown_render import (
    Palette,
    StreamingMarkdown,
    render_markdown,
    set_copy_label,
)
from bubble_desktop.ui.markdown_render import (
    copy_label as _copy_label,
)
from bubble_desktop.ui.source_text import SourceView


def is_dark(widget: QWidget | None = None) -> bool:
    """Whether the current palette is dark (window colour darker than its text)."""
    pal = widget.palette() if widget is not None else QGuiApplication.palette()
    return (
        pal.color(QPalette.ColorRole.Window).lightness()
        < pal.color(QPalette.ColorRole.WindowText).lightness()
    )


# Qt rich text understands a small CSS subset; sizes are relative to the widget font.
DOCUMENT_CSS = """
h1 { font-size: x-large; margin-top: 10px; margin-bottom: 6px; }
h2 { font-size: large; margin-top: 10px; margin-bottom: 4px; }
h3, h4, h5, h6 { font-size: medium; margin-top: 8px; margin-bottom: 4px; }
p { margin-top: 4px; margin-bottom: 4px; }
code { font-family: "DejaVu Sans Mono", Consolas, "Courier New", monospace; }
pre { font-family: "DejaVu Sans Mono", Consolas, "Courier New", monospace; }
ul, ol { margin-top: 2px; margin-bottom: 2px; }
blockquote { margin-left: 12px; font-style: italic; }
"""

# Message "bubbles": the question on a tinted card, the answer on the base colour.
CHAT_CSS = """
QWidget#chatContainer { background: palette(base); }
QFrame#userMessage { background: palette(alternate-base); border-radius: 10px; }
QFrame#assistantMessage { background: palette(base); border-radius: 10px; }
QLabel#messageStatus, QLabel#messageStats { color: #8a8f98; }
QLabel#messageError { color: #c62828; }
QLabel#messageNotice { color: #b26a00; }
"""

COPIED_SHOWN_MS = 1500  # how long a code block's link says "Copied"

_ZWSP = "\u200b"
_END = QTextCursor.MoveOperation.End
_KEEP_ANCHOR = QTextCursor.MoveMode.KeepAnchor
_START = QTextCursor.MoveOperation.Start


def _append_html(cursor: QTextCursor, markup: str, first: bool) -> None:
    """Append ``markup`` at the cursor so the result has the blocks ``setHtml`` would give.

    ``insertHtml`` merges the first inserted block into the block at the cursor (a heading
    appended after a paragraph would lose its level). A zero-width space inserted first keeps
    the inserted blocks apart; it is removed again right after.
    """
    if first:  # not isEmpty(): a document holding only a rule (<hr>) has no characters either
        cursor.document().setHtml(markup)  # insertHtml drops a list around a table at the very start
        cursor.movePosition(_END)
        return
    start = cursor.position()
    cursor.insertHtml(_ZWSP + markup)
    end = cursor.position()
    cursor.setPosition(start)
    cursor.setPosition(start + 1, _KEEP_ANCHOR)
    if cursor.selectedText() == _ZWSP:
        cursor.removeSelectedText()
        end -= 1
    cursor.setPosition(end)


class _Streaming:
    """The state of an answer being streamed into a ``MessageBody``.

    A plain object: attribute writes on a QObject subclass go through PySide's property lookup
    (~0.3 µs each), and a long answer makes thousands of flushes.
    """

    __slots__ = (
        "markdown",
        "cursor",
        "frozen_any",
        "tail_start",
        "tail_shown",
        "tail_exact",
        "tail_blanks",
        "at_end",
        "tail_block",
    )

    def __init__(self, markdown: StreamingMarkdown, cursor: QTextCursor) -> None:
        self.markdown = markdown
        self.cursor = cursor  # the one cursor every edit goes through (none created per flush)
        self.frozen_any = False
        self.tail_start = 0  # where the plain open tail starts (after the frozen blocks)
        self.tail_shown = ""  # the source of the tail shown: the stream's open tail after every flush
        # plain text appended at the end of the rendered tail shows as rendering it would
        self.tail_exact = False
        self.tail_blanks = ""  # blanks at the tail's end that its render leaves out
        self.at_end = False  # whether ``cursor`` is known to be at the document's end
        self.tail_block: tuple[QTextBlockFormat, QTextCharFormat, bool] = (
            cursor.blockFormat(),
            cursor.blockCharFormat(),
            cursor.currentList() is not None,
        )


class MessageBody(QTextBrowser):
    """Read-only rich text that is as tall as its content (the scroll area scrolls, not it)."""

    code_copied = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().setDefaultStyleSheet(DOCUMENT_CSS)
        self.document().documentLayout().documentSizeChanged.connect(self._on_document_size_changed)
        self.anchorClicked.connect(self._on_anchor_clicked)
        self.codes: list[str] = []
        self._streaming: _Streaming | None = None
        self._height = 0
        self.restyle_when_done: Palette | None = None  # the theme changed while streaming
        self._copied_href = ""  # the code block whose link says "Copied" for a moment

    # ---- content -----------------------------------------------------------------------
    def set_markdown(self, text: str, palette: Palette) -> None:
        rendered = render_markdown(text, palette)
        self.codes = rendered.codes
        self._streaming = None
        self.setHtml(rendered.html)

    def set_plain(self, text: str) -> None:
        self.codes = []
        self._streaming = None
        self.setHtml(f'<p style="white-space: pre-wrap">{html.escape(text)}</p>')

    def begin_stream(self, palette: Palette) -> None:
        self.codes = []
        self.document().clear()
        self._streaming = _Streaming(StreamingMarkdown(palette), QTextCursor(self.document()))

    def feed(self, text: str) -> None:
        if self._streaming is not None:
            self._streaming.markdown.feed(text)

    def feed_and_flush(self, text: str) -> None:
        """``feed`` then ``flush``: what each drain of a streamed answer does (thousands per
        answer), so text that only extends the open tail's last line goes straight in."""
        st = self._streaming
        if st is None or not text:
            return
        if st.tail_exact and st.markdown.extend_line(text):
            self._append_to_tail(st, text)
            return
        st.markdown.feed(text)
        self.flush()

    def flush(self, final: bool = False) -> None:
        """Append newly closed blocks (rendered once) and the new text of the open tail (plain)."""
        st = self._streaming
        if st is None:
            return
        stream = st.markdown
        cursor = st.cursor
        if not final and st.tail_exact:
            # the common case: a few more characters on the open block's last line; no
            # StreamUpdate, no scan, just append them at the end
            added = stream.take_plain()
            if added is not None:
                if added:
                    self._append_to_tail(st, added)
                return
        update = stream.update(final=final)
        tail = update.tail
        if final:
            self._streaming = None
        if not update.frozen_html and tail == st.tail_shown:
            return
        st.at_end = False
        cursor.beginEditBlock()
        # the closed blocks' source is the start of the tail shown: replace it all
        self._remove_tail(st)
        if update.frozen_html:
            _append_html(cursor, update.frozen_html, first=not st.frozen_any)
            st.frozen_any = True
            st.tail_start = cursor.position()
            st.tail_block = (cursor.blockFormat(), cursor.blockCharFormat(), cursor.currentList() is not None)
            self.codes = stream.codes
        st.tail_exact, st.tail_blanks = False, ""
        if tail:
            # the open block rendered as it stands (issue 16: raw ** and ``` until it closed)
            rendered, st.tail_exact, st.tail_blanks = stream.render_tail()
            if rendered.html:
                _append_html(cursor, rendered.html, first=not st.frozen_any)
                st.at_end = True
            self.codes = stream.codes + list(rendered.codes)
        st.tail_shown = tail
        cursor.endEditBlock()
        if update.frozen_html:
            # Text inserted where the browser's own cursor is drags it along: left at the end,
            # it makes the first show lay out the whole answer to scroll to it. Keep it at the
            # start, where setHtml leaves it (unless the user selected something).
            own = self.textCursor()
            if own.position() >= st.tail_start and not own.hasSelection():
                self.moveCursor(_START)

    @staticmethod
    def _append_to_tail(st: _Streaming, text: str) -> None:
        """Append plain ``text`` to the open tail shown at the document's end."""
        cursor = st.cursor
        if not st.at_end:
            cursor.movePosition(_END)
            st.at_end = True
        cursor.beginEditBlock()  # in an edit block Qt does not place the cursor on an unlaid line
        if st.tail_blanks:
            cursor.insertText(st.tail_blanks + text)
            st.tail_blanks = ""
        else:
            cursor.insertText(text)
        cursor.endEditBlock()
        st.tail_shown += text

    @staticmethod
    def _remove_tail(st: _Streaming) -> None:
        """Remove the plain tail; removing it can leave its first block's format (e.g. list
        membership) on the block the tail started in: put back what that block had."""
        cursor = st.cursor
        cursor.setPosition(st.tail_start)
        cursor.movePosition(_END, _KEEP_ANCHOR)
        if cursor.hasSelection():
            cursor.removeSelectedText()
        block_format, char_format, in_list = st.tail_block
        current = cursor.currentList()
        if current is not None and not in_list:
            current.remove(cursor.block())
        if cursor.blockFormat() != block_format:
            cursor.setBlockFormat(block_format)
        if cursor.blockCharFormat() != char_format:
            cursor.setBlockCharFormat(char_format)
        st.tail_shown = ""

    @property
    def is_streaming(self) -> bool:
        return self._streaming is not None

    @property
    def streamed_text(self) -> str:
        return self._streaming.markdown.text if self._streaming is not None else ""

    # ---- size --------------------------------------------------------------------------
    @Slot(QSizeF)
    def _on_document_size_changed(self, size: QSizeF) -> None:
        # The layout reports its new size; asking document().size() would force a full relayout.
        self._fit(size.height())

    def _fit(self, height: float) -> None:
        h = int(height) + 4
        if h != self._height:
            self._height = h
            self.setFixedHeight(h)

    def wheelEvent(self, event: Any) -> None:  # noqa: N802
        event.ignore()  # let the conversation scroll

    # ---- links -------------------------------------------------------------------------
    def link_text(self, href: str) -> str:
        """The text shown for the link to ``href`` ("" when there is none)."""
        found = self._find_link(href)
        return found[2] if found else ""

    def _find_link(self, href: str) -> tuple[int, int, str] | None:
        block = self.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid() and fragment.charFormat().anchorHref() == href:
                    return fragment.position(), fragment.length(), fragment.text()
                it += 1
            block = block.next()
        return None

    def _set_link_text(self, href: str, text: str) -> None:
        """Replace the words of one link (Copy -> Copied), keeping its format."""
        found = self._find_link(href)
        if found is None or found[2] == text:
            return
        position, length, _ = found
        cursor = QTextCursor(self.document())
        cursor.setPosition(position)
        cursor.setPosition(position + length, _KEEP_ANCHOR)
        fmt = cursor.charFormat()
        cursor.insertText(text, fmt)
        st = self._streaming
        if st is not None and position < st.tail_start:
            st.tail_start += len(text) - length

    @Slot()
    def _on_copied_timeout(self) -> None:
        if self._copied_href:
            self._set_link_text(self._copied_href, _copy_label())
            self._copied_href = ""

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme() == "copy":
            try:
                code = self.codes[int(url.path())]
            except (ValueError, IndexError):
                return
            QGuiApplication.clipboard().setText(code)
            self._set_link_text(url.toString(), self.tr("Copied"))
            self._copied_href = url.toString()
            QTimer.singleShot(COPIED_SHOWN_MS, self._on_copied_timeout)
            self.code_copied.emit(code)
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)


class MessageWidget(QFrame):
    """One message: who, the text, its actions (copy, edit, regenerate), sources, errors, speed."""

    copy_requested = Signal(object)
    edit_requested = Signal(object)
    regenerate_requested = Signal(object)
    source_activated = Signal(object)  # SourceView
    version_requested = Signal(object, int)  # this widget, the version to show (1-based)

    def __init__(self, role: str, message_id: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message_id = message_id
        self._parts: list[str] = []
        self.sources: tuple[SourceView, ...] = ()
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(2)

        header = QHBoxLayout()
        header.setSpacing(4)
        self.who = QLabel(self.tr("You") if role == "user" else self.tr("Bubble"))
        self.who.setObjectName("messageRole")
        font = self.who.font()
        font.setBold(True)
        self.who.setFont(font)
        header.addWidget(self.who)
        self.status = QLabel()
        self.status.setObjectName("messageStatus")
        header.addWidget(self.status)
        header.addStretch(1)
        self.copy_button = self._tool(self.tr("Copy"), self.tr("Copy this message"), self._on_copy_clicked)
        header.addWidget(self.copy_button)
        self.edit_button = self._tool(
            self.tr("Edit"), self.tr("Edit this question and send it again"), self._on_edit_clicked
        )
        self.edit_button.setVisible(role == "user")
        header.addWidget(self.edit_button)
        self.regenerate_button = self._tool(
            self.tr("Regenerate"), self.tr("Answer this question again"), self._on_regenerate_clicked
        )
        self.regenerate_button.setVisible(False)
        header.addWidget(self.regenerate_button)
        layout.addLayout(header)

        self.body = MessageBody(self)
        layout.addWidget(self.body)

        self.notice_label = QLabel()
        self.notice_label.setObjectName("messageNotice")
        self.notice_label.setWordWrap(True)
        self.notice_label.setVisible(False)
        layout.addWidget(self.notice_label)

        self.error_label = QLabel()
        self.error_label.setObjectName("messageError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)
        layout.addWidget(self.error_label)

        self.sources_label = QLabel()
        self.sources_label.setObjectName("messageSources")
        self.sources_label.setWordWrap(True)
        self.sources_label.setTextFormat(Qt.TextFormat.RichText)
        self.sources_label.setVisible(False)
        self.sources_label.linkActivated.connect(self._on_source_link_activated)
        self.sources_label.linkHovered.connect(self._on_source_link_hovered)
        layout.addWidget(self.sources_label)

        self.stats_label = QLabel()
        self.stats_label.setObjectName("messageStats")
        self.stats_label.setVisible(False)
        layout.addWidget(self.stats_label)

        # ‹ 1/2 › under an answer that was regenerated
        self.version = 1
        self.version_count = 1
        self.version_bar = QWidget(self)
        self.version_bar.setObjectName("versionBar")
        bar = QHBoxLayout(self.version_bar)
        bar.setContentsMargins(0, 2, 0, 0)
        bar.setSpacing(2)
        self.previous_version_button = self._tool(
            "‹", self.tr("Previous version of this answer"), self._on_previous_clicked
        )
        self.previous_version_button.setObjectName("previousVersion")
        self.version_label = QLabel()
        self.version_label.setObjectName("versionLabel")
        self.next_version_button = self._tool(
            "›", self.tr("Next version of this answer"), self._on_next_clicked
        )
        self.next_version_button.setObjectName("nextVersion")
        for arrow in (self.previous_version_button, self.next_version_button):
            font = arrow.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            arrow.setFont(font)
        bar.addWidget(self.previous_version_button)
        bar.addWidget(self.version_label)
        bar.addWidget(self.next_version_button)
        bar.addStretch(1)
        self.version_bar.setVisible(False)
        layout.addWidget(self.version_bar)
        self._versions_enabled = True

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(slot)
        return button

    # ---- content -----------------------------------------------------------------------
    def set_text(self, text: str, palette: Palette) -> None:
        self.text = text
        if self.role == "user":
            self.body.set_plain(text)
        else:
            self.body.set_markdown(text, palette)

    def begin_stream(self, palette: Palette) -> None:
        self.text = ""
        self.status.setText(self.tr("writing…"))
        self.copy_button.setEnabled(False)
        self.body.begin_stream(palette)

    def feed(self, text: str) -> None:
        self._parts.append(text)
        self.body.feed_and_flush(text)

    @property
    def text(self) -> str:
        """The message's Markdown source (what Copy copies)."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @text.setter
    def text(self, value: str) -> None:
        self._parts = [value] if value else []

    def end_stream(self) -> None:
        self.body.flush(final=True)
        if self.body.restyle_when_done is not None and self.role == "assistant":
            palette, self.body.restyle_when_done = self.body.restyle_when_done, None
            self.body.set_markdown(self.text, palette)
        self.status.setText("")
        self.copy_button.setEnabled(True)

    def set_sources(self, sources: tuple[SourceView, ...]) -> None:
        self.sources = sources
        if not sources:
            self.sources_label.setVisible(False)
            return
        from bubble_desktop.ui.source_text import source_label

        links = []
        for s in sources:
            where = self.tr("web") if s.kind == "web" else self.tr("file")
            links.append(
                f'<a href="source:{s.number}">[{s.number}] {html.escape(source_label(s))}</a>'
                f' <span style="color: gray">({where})</span>'
            )
        self.sources_label.setText(self.tr("Sources:") + " " + " &nbsp; ".join(links))
        self.sources_label.setVisible(True)

    def set_notices(self, notices: tuple[str, ...]) -> None:
        self.notice_label.setText("\n".join(localize(n) for n in notices))
        self.notice_label.setVisible(bool(notices))

    def set_error(self, message: str, hint: str = "") -> None:
        if self.notice_label.text().strip() == message.strip():
            self.notice_label.setVisible(False)  # the same words once is enough
        text = f"⚠ {message}" + (f"\n{hint}" if hint else "")
        self.error_label.setText(text)
        self.error_label.setVisible(True)

    def set_stats(self, text: str) -> None:
        self.stats_label.setText(text)
        self.stats_label.setVisible(bool(text))

    def set_versions(self, version: int, count: int) -> None:
        """Show "‹ version/count ›" when the answer has more than one version."""
        self.version, self.version_count = version, count
        self.version_label.setText(f"{version}/{count}")
        self.version_label.setToolTip(
            self.tr("Version %1 of %2").replace("%1", str(version)).replace("%2", str(count))
        )
        self.version_bar.setVisible(count > 1)
        self.enable_versions(self._versions_enabled)

    def enable_versions(self, enabled: bool) -> None:
        """The arrows work only while no answer is being written in this conversation."""
        self._versions_enabled = enabled
        self.previous_version_button.setEnabled(enabled and self.version > 1)
        self.next_version_button.setEnabled(enabled and self.version < self.version_count)

    # ---- actions -----------------------------------------------------------------------
    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        self.copy_requested.emit(self)

    @Slot()
    def _on_edit_clicked(self) -> None:
        self.edit_requested.emit(self)

    @Slot()
    def _on_regenerate_clicked(self) -> None:
        self.regenerate_requested.emit(self)

    @Slot()
    def _on_previous_clicked(self) -> None:
        if self.version > 1:
            self.version_requested.emit(self, self.version - 1)

    @Slot()
    def _on_next_clicked(self) -> None:
        if self.version < self.version_count:
            self.version_requested.emit(self, self.version + 1)

    def _source_for_link(self, link: str) -> SourceView | None:
        try:
            number = int(link.split(":", 1)[1])
        except (IndexError, ValueError):
            return None
        return next((s for s in self.sources if s.number == number), None)

    @Slot(str)
    def _on_source_link_activated(self, link: str) -> None:
        source = self._source_for_link(link)
        if source is not None:
            self.source_activated.emit(source)

    @Slot(str)
    def _on_source_link_hovered(self, link: str) -> None:
        """The passage in a tooltip: a QLabel has no tooltip per link, so show it while one is hovered."""
        from PySide6.QtGui import QCursor
        from PySide6.QtWidgets import QToolTip

        from bubble_desktop.ui.source_text import source_tooltip

        source = self._source_for_link(link) if link else None
        if source is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), source_tooltip(source), self.sources_label)


class ChatView(QScrollArea):
    """The list of messages; keeps the newest text in view while the user is at the bottom."""

    edit_requested = Signal(object)  # MessageWidget
    regenerate_requested = Signal(object)
    source_activated = Signal(object)  # SourceView
    version_requested = Signal(object, int)  # MessageWidget, version

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._container = QWidget()
        self._container.setObjectName("chatContainer")
        self._layout = QVBoxLayout(self._container)
        self._layout.setContentsMargins(16, 12, 16, 12)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.setWidget(self._container)
        self.messages: list[MessageWidget] = []
        self._follow = True
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_value_changed)
        set_copy_label(self.tr("Copy"))
        self.palette_md = Palette.for_theme(is_dark(self))
        self.setStyleSheet(CHAT_CSS)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.refresh_palette()

    def refresh_palette(self) -> None:
        """Re-render the answers shown when the theme turns light/dark: their code blocks carry
        inline colours of the old theme (a light background under near-white text)."""
        palette = Palette.for_theme(is_dark(self))
        if palette == self.palette_md:
            return
        self.palette_md = palette
        for m in self.messages:
            if m.role == "assistant" and not m.body.is_streaming and m.text:
                m.set_text(m.text, palette)
            elif m.body.is_streaming:
                m.body.restyle_when_done = palette

    def clear(self) -> None:
        for m in self.messages:
            self._layout.removeWidget(m)
            m.deleteLater()
        self.messages.clear()
        self._follow = True

    def add_message(self, role: str, text: str = "", message_id: int | None = None) -> MessageWidget:
        self.palette_md = Palette.for_theme(is_dark(self))  # follows a theme switch
        widget = MessageWidget(role, message_id, self._container)
        if text:
            widget.set_text(text, self.palette_md)
        widget.edit_requested.connect(self.edit_requested)
        widget.regenerate_requested.connect(self.regenerate_requested)
        widget.source_activated.connect(self.source_activated)
        widget.version_requested.connect(self.version_requested)
        self._layout.insertWidget(self._layout.count() - 1, widget)
        self.messages.append(widget)
        self._follow = True
        return widget

    def remove_from(self, widget: MessageWidget) -> None:
        """Remove ``widget`` and every message after it (regenerate / edit & resend)."""
        if widget not in self.messages:
            return
        index = self.messages.index(widget)
        for m in self.messages[index:]:
            self._layout.removeWidget(m)
            m.deleteLater()
        del self.messages[index:]

    def update_actions(self, busy: bool) -> None:
        """Regenerate only on the last answer; nothing editable while an answer streams."""
        last_answer = next((m for m in reversed(self.messages) if m.role == "assistant"), None)
        for m in self.messages:
            if m.role == "assistant":
                m.regenerate_button.setVisible(m is last_answer and not busy)
                m.enable_versions(not busy)
            else:
                m.edit_button.setEnabled(not busy)

    @Slot(int, int)
    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    @Slot(int)
    def _on_value_changed(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 8


def plain_text_of_html(markup: str) -> str:
    """What a rich-text document shows for ``markup`` (tests compare streamed vs one-shot)."""
    doc = QTextDocument()
    doc.setHtml(markup)
    return doc.toPlainText()
