"""Issue 16.8: an answer being streamed shows rendered Markdown, not raw ``**``/``###``/fences."""

from __future__ import annotations

import pytest

from bubble_desktop.ui.markdown_render import LIGHT

ANSWER = (
    "### Steps\n\n"
    "First, **install the package** with pip and check the `--version` flag. This is *important*.\n\n"
    "```python\nimport sys\n\ndef main() -> int:\n    print(sys.argv)\n    return 0\n```\n\n"
    "- a **bold item** in a list\n- a second item with `code`\n\n"
    "## Done\n\nThat is **all** there is to it; ~~nothing~~ more."
)
RAW = ("**", "###", "```", "~~")


@pytest.mark.parametrize("step", [1, 3, 7])
def test_no_raw_markdown_while_streaming(qapp, step: int) -> None:  # type: ignore[no-untyped-def]
    from bubble_desktop.ui.chat_view import ChatView

    view = ChatView()
    view.resize(700, 500)
    message = view.add_message("assistant")
    message.begin_stream(LIGHT)
    seen_code = seen_heading = False
    for i in range(0, len(ANSWER), step):
        message.feed(ANSWER[i : i + step])  # what each 30 Hz drain does
        shown = message.body.toPlainText()
        for raw in RAW:
            assert raw not in shown, f"raw {raw!r} shown after {ANSWER[: i + step]!r}: {shown!r}"
        if "import sys" in ANSWER[: i + step] and "```\n\n-" not in ANSWER[: i + step]:
            seen_code = seen_code or "import sys" in shown
        seen_heading = seen_heading or "Steps" in shown
        assert not shown.startswith("#")
    message.end_stream()
    assert seen_code and seen_heading
    other = ChatView()
    one = other.add_message("assistant", ANSWER)
    assert message.body.toPlainText() == one.body.toPlainText()
    other.close()
    view.close()


def test_open_code_block_is_shown_as_code_mid_stream(qapp) -> None:  # type: ignore[no-untyped-def]
    from bubble_desktop.ui.chat_view import ChatView

    view = ChatView()
    message = view.add_message("assistant")
    message.begin_stream(LIGHT)
    message.feed("Run this:\n\n```python\nprint('hi')\nx = 1\n")
    html = message.body.toHtml()
    assert "print" in message.body.toPlainText() and "```" not in message.body.toPlainText()
    assert "copy:0" in html  # the open fence is a code block with its Copy link already
    assert message.body.codes == ["print('hi')\nx = 1"]
    message.end_stream()
    view.close()


@pytest.mark.parametrize(
    ("tail", "shown"),
    [
        ("Some **bol", "Some **bol**"),
        ("a *it", "a *it*"),
        ("use `pri", "use `pri`"),
        ("x **", "x "),
        ("**", ""),
        ("a ~~str", "a ~~str~~"),
        ("2 * 3", "2 * 3"),
        ("snake_case", "snake_case"),
        ("```py\nprint(1)\n``", "```py\nprint(1)\n"),
    ],
)
def test_open_tail_source(tail: str, shown: str) -> None:
    from bubble_desktop.ui.markdown_render import open_tail_source

    assert open_tail_source(tail)[0] == shown
