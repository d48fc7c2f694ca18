"""The streaming Markdown renderer: streamed == one-shot for any split, in HTML and in Qt's document."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bubble_desktop.ui.markdown_render import (
    LIGHT,
    StreamingMarkdown,
    render_markdown,
    split_blocks,
)

SAMPLE = (
    "# Title\n\nSome *text* with `code` and a [link](https://example.com).\n\n## Sub\n\n"
    "```python\ndef f():\n\n    return 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nmiddle para\n\n"
    "- x\n- y\n\n1. a\n\n2. b\n\n> quote\n\n~~~\nraw\n\n~~~\n\n中文段落，**加粗**。\n\nend"
)

# Pieces that make Markdown structure likely: fences, lists, headings, tables, blank lines.
_PIECES = st.sampled_from(
    [
        "\n",
        "\n\n",
        "# ",
        "## ",
        "- ",
        "1. ",
        "```",
        "```py\n",
        "~~~",
        "|",
        "| a | b |\n|---|---|\n",
        "> ",
        "*",
        "_",
        "`",
        "word ",
        "中文",
        "    ",
        "[l](http://x)",
        "x",
        "2)",
        "---\n",
    ]
)
_TEXT = st.lists(_PIECES, max_size=40).map("".join) | st.text(max_size=120)


def _stream(text: str, cuts: list[int]) -> StreamingMarkdown:
    s = StreamingMarkdown(LIGHT)
    last = 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)):
        s.feed(text[last:cut])
        s.update()
        last = cut
    s.feed(text[last:])
    s.update(final=True)
    return s


def test_split_blocks_concatenates_back() -> None:
    blocks = split_blocks(SAMPLE)
    assert "".join(blocks) == SAMPLE
    assert len(blocks) > 5  # finished blocks get frozen
    # a blank line inside a fence never cuts
    assert any("def f():\n\n    return 1" in b for b in blocks)


def test_code_blocks_are_highlighted_and_numbered() -> None:
    r = render_markdown(SAMPLE)
    assert r.codes == ["def f():\n\n    return 1", "raw\n"]
    assert 'href="copy:0"' in r.html and 'href="copy:1"' in r.html
    assert "<span style=" in r.html  # pygments inline colours
    assert "<h1>" in r.html and "<table border" in r.html and "<li>" in r.html


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_streamed_html_equals_one_shot(text: str, cuts: list[int]) -> None:
    s = _stream(text, cuts)
    one = render_markdown(text)
    assert s.text == text
    assert s.html == one.html
    assert s.codes == one.codes


@given(text=_TEXT, data=st.data())
@settings(max_examples=100, deadline=None)
def test_blocks_of_a_prefix_are_blocks_of_the_whole(text: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    prefix_blocks = split_blocks(text[:cut])[:-1]  # all but the open tail
    assert split_blocks(text)[: len(prefix_blocks)] == prefix_blocks


def _block_shape(doc) -> list[tuple[str, int, bool]]:  # type: ignore[no-untyped-def]
    out = []
    block = doc.begin()
    while block.isValid():
        out.append((block.text(), block.blockFormat().headingLevel(), block.textList() is not None))
        block = block.next()
    return out


# Inputs hypothesis found over time (empty headings, items, cells, quotes; rules in lists and
# quotes; code fences in lists): Qt's HTML importer treats empty blocks differently in one setHtml
# and in an appended fragment, so render_block avoids them.
@example(text="\n\n\n_\n# \n\n# ", cuts=[154])
@example(text="\n\n\n# \n\n```", cuts=[30])
@example(text="---\n\n# ", cuts=[6])
@example(text="\n\n\n- \n\n```", cuts=[30])
@example(text="## ```py\n| a | b |\n|---|---|\n*# \n\n\n\n\n_", cuts=[974])
@example(text="---\n\n|", cuts=[6])
@example(text="| a | b |\n|---|---|\n\n# # # ", cuts=[22])
@example(text="- ```py\n\n\n|", cuts=[11])
@example(text="\n\n> > \n\nword ", cuts=[121])
@example(text="|\n\n|\n1. ---\n", cuts=[4])
@example(text="1. ---\n\n```", cuts=[9])
@example(text="- \n\n> ---\n", cuts=[5])
@example(text="\x0c\n:", cuts=[3])
@example(text="*\n\n> ---\n> - ", cuts=[4])
@example(text="a\n\n> ---\n> b", cuts=[4])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_streamed_document_equals_one_shot_document(qapp, text: str, cuts: list[int]) -> None:  # type: ignore[no-untyped-def]
    """In Qt: the tail-replacing document ends with the same blocks as one setHtml of the final text."""
    from bubble_desktop.ui.chat_view import MessageBody

    one = MessageBody()
    one.set_markdown(text, LIGHT)
    streamed = MessageBody()  # fed and flushed apart, as tests and callers may
    drained = MessageBody()  # through feed_and_flush, as a streamed answer is
    streamed.begin_stream(LIGHT)
    drained.begin_stream(LIGHT)
    last = 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)):
        streamed.feed(text[last:cut])
        streamed.flush()
        drained.feed_and_flush(text[last:cut])
        last = cut
    streamed.feed(text[last:])
    streamed.flush(final=True)
    drained.feed_and_flush(text[last:])
    drained.flush(final=True)
    for body in (streamed, drained):
        assert body.toPlainText() == one.toPlainText()
        assert _block_shape(body.document()) == _block_shape(one.document())
        assert body.codes == one.codes


def test_streamed_by_small_drains_equals_one_shot(qapp) -> None:  # type: ignore[no-untyped-def]
    """A few characters per drain, as the 30 Hz timer gives them: mostly the plain fast path."""
    from bubble_desktop.ui.chat_view import MessageBody

    one = MessageBody()
    one.set_markdown(SAMPLE, LIGHT)
    for step in (1, 3, 8):
        streamed = MessageBody()
        streamed.begin_stream(LIGHT)
        for i in range(0, len(SAMPLE), step):
            streamed.feed_and_flush(SAMPLE[i : i + step])
        assert streamed.streamed_text == SAMPLE
        streamed.flush(final=True)
        assert streamed.toPlainText() == one.toPlainText()
        assert _block_shape(streamed.document()) == _block_shape(one.document())
        assert streamed.codes == one.codes
        assert streamed.textCursor().position() == 0  # where setHtml leaves it


def test_streaming_work_stays_near_linear() -> None:
    """Frozen blocks are not re-rendered: feeding 300 paragraphs one at a time renders each about once."""
    import bubble_desktop.ui.markdown_render as mr

    calls: list[int] = []
    real = mr.render_block

    def counting(block: str, code_offset: int = 0, palette=LIGHT):  # type: ignore[no-untyped-def]
        calls.append(len(block))
        return real(block, code_offset, palette)

    mr.render_block = counting  # type: ignore[assignment]
    try:
        text = "".join(f"Paragraph {i} with some words in it.\n\n" for i in range(300))
        s = StreamingMarkdown(LIGHT)
        for i in range(0, len(text), 7):
            s.feed(text[i : i + 7])
            s.update()
        s.update(final=True)
    finally:
        mr.render_block = real  # type: ignore[assignment]
    assert sum(calls) < 12 * len(text)  # whole-text re-render per update would be ~len(text)²/7
    assert s.html == render_markdown(text).html
