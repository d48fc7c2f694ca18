"""Chat view: code blocks follow a theme switch; long code lines and the Copy link (issue 16 items 2, 3)."""

from __future__ import annotations

from bubble_desktop.ui.chat_view import ChatView
from bubble_desktop.ui.markdown_render import DARK, LIGHT
from bubble_desktop.ui.theme import apply_theme

CODE_ANSWER = "Here:\n\n```python\nprint('hi')\n```\n"


def test_theme_switch_re_renders_open_code_blocks(qapp, qtbot):  # type: ignore[no-untyped-def]
    apply_theme(qapp, "light", 11)
    try:
        view = ChatView()
        qtbot.addWidget(view)
        view.show()
        message = view.add_message("assistant", CODE_ANSWER)
        streaming = view.add_message("assistant")
        streaming.begin_stream(view.palette_md)
        streaming.feed("```\ncode\n```\n\n")
        assert LIGHT.code_bg in message.body.toHtml()
        apply_theme(qapp, "dark", 11)
        qtbot.waitUntil(lambda: view.palette_md == DARK, timeout=2000)
        html = message.body.toHtml()
        assert DARK.code_bg in html and LIGHT.code_bg not in html
        streaming.end_stream()
        assert DARK.code_bg in streaming.body.toHtml()
    finally:
        apply_theme(qapp, "light", 11)


def test_long_code_lines_wrap_and_copy_stays_visible(qapp, qtbot):  # type: ignore[no-untyped-def]
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    long_line = "x = " + " + ".join(f"value_{i}" for i in range(80)) + "  # " + "y" * 150
    message = view.add_message("assistant", f"```python\n{long_line}\n```\n")
    body = message.body
    qapp.processEvents()
    assert body.document().idealWidth() <= body.viewport().width() + 1
    cursor = body.textCursor()
    cursor.setPosition(body.document().find("Copy").position())  # the code block's link
    assert 0 <= body.cursorRect(cursor).x() < body.viewport().width()
    # clicking it copies the code and says so for a moment
    from PySide6.QtCore import QUrl

    body._on_anchor_clicked(QUrl("copy:0"))
    assert qapp.clipboard().text() == long_line
    assert body.link_text("copy:0") == "Copied"
    qtbot.waitUntil(lambda: body.link_text("copy:0") == "Copy", timeout=4000)
