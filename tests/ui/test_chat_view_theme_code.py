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
