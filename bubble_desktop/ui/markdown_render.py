"""Markdown -> Qt rich-text HTML, one-shot or streamed.

Why blocks: re-rendering a whole answer on every token costs O(n²) (DESIGN.md). The text is cut
into top-level blocks at boundaries that depend only on what came *before* them (a blank line
outside a code fence, followed by a line whose first character cannot continue the previous
block). Such a cut never moves once seen, so finished blocks are rendered once and frozen; only
the still-open tail is re-rendered. The one-shot render is defined as the same per-block render,
so a streamed answer ends exactly equal to rendering the final text in one go, for any split of
the stream (tests/ui/test_chat_markdown.py checks that with hypothesis).

Code blocks are highlighted by pygments with inline styles (Qt rich text has no CSS classes) and
get a "copy:N" link; N numbers code blocks across the whole message and ``code_blocks`` keeps
their raw text for the copy button.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
# A line starting with one of these after a blank line may still belong to the block before it
# (a list item, a numbered item, emphasis vs. a bullet...): never cut there. One character
# decides, so a cut seen in a prefix of the text is a cut in every longer text.
_NO_CUT_FIRST = set("-+*0123456789 \t")
_EMPTY_HEADING = re.compile(r"<h([1-6])></h\1>\n?")
_EMPTY_ITEM = re.compile(r"<(li|t[dh](?: [^>]*)?)>\s*(?:<hr />\s*)*</(li|t[dh])>")  # "1. ---" too
_QUOTE_OPENING_RULE = re.compile(r"^((?:<blockquote>\n)*)<blockquote>\n<hr />\n")
_EMPTY_BLOCK = re.compile(r"<(blockquote|p)>\s*(?:<hr />\s*)*</\1>\n?")


@dataclass(frozen=True)
class Palette:
    """Colours of rendered messages; one per theme."""

    code_bg: str = "#f3f4f6"
    code_border: str = "#d0d7de"
    link: str = "#2563eb"
    muted: str = "#6b7280"
    pygments_style: str = "default"

    @classmethod
    def for_theme(cls, dark: bool) -> Palette:
        if dark:
            return cls("#1f2430", "#3b4252", "#7aa2f7", "#9ca3af", "monokai")
        return cls()


LIGHT = Palette()
DARK = Palette.for_theme(True)


def split_blocks(text: str) -> list[str]:
    """Cut ``text`` into top-level blocks; concatenating them gives back ``text``.

    A cut goes right after a blank line (outside a fenced code block) when the next line starts
    with a character that begins a new top-level block whatever follows it.
    """
    cuts = _BlockCutter().scan(text, final=True)
    bounds = [0, *cuts, len(text)] if text else [0]
    return [text[a:b] for a, b in pairwise(bounds)]


class _BlockCutter:
    """The scan behind ``split_blocks``, resumable over a growing text.

    Streaming calls ``scan`` after each new line: each complete line is read once (not the
    whole open block again on every update), an unfinished last line only for a cut at its start.
    """

    __slots__ = ("pos", "start", "fence", "prev_blank")

    def __init__(self) -> None:
        self.pos = 0  # start of the first line not read yet
        self.start = 0  # start of the current block
        self.fence: str | None = None  # the fence string that opened the current code block
        self.prev_blank = False

    def scan(self, text: str, final: bool) -> list[int]:
        """New cuts (block starts) in ``text``, which extends the text scanned before.

        Without ``final`` an unfinished last line is left to the next call.
        """
        found: list[int] = []
        pos, start, fence, prev_blank = self.pos, self.start, self.fence, self.prev_blank
        n = len(text)
        while pos < n:
            first = text[pos]
            if fence is None and prev_blank and pos > start and first != "\n" and first not in _NO_CUT_FIRST:
                found.append(pos)
                start = pos
            end = text.find("\n", pos)
            if end < 0:
                if not final:
                    break  # its first character decided the cut; the rest is read once complete
                end = n
            line = text[pos:end]
            if fence is None:
                m = _FENCE_OPEN.match(line)
                if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                    fence = m.group(1)
                prev_blank = line.strip() == ""
            else:
                stripped = line.strip()
                if (
                    len(line) - len(line.lstrip(" ")) <= 3
                    and stripped
                    and set(stripped) == {fence[0]}
                    and len(stripped) >= len(fence)
                ):
                    fence = None
                prev_blank = False
            pos = end + 1
        self.pos, self.start, self.fence, self.prev_blank = pos, start, fence, prev_blank
        return found

    def drop(self, count: int) -> None:
        """The first ``count`` characters (whole blocks) were taken off the scanned text."""
        self.pos -= count
        self.start -= count


@lru_cache(maxsize=4)
def _markdown(palette: Palette) -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.enable("strikethrough")
    rules = md.renderer.rules  # type: ignore[attr-defined]  # RendererHTML has them; the protocol does not say
    rules["fence"] = _render_fence
    rules["code_block"] = _render_fence
    rules["table_open"] = _render_table_open
    rules["code_inline"] = _render_code_inline
    md.options["bubble_palette"] = palette
    return md


def _render_code_inline(tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    palette: Palette = options.get("bubble_palette", LIGHT)
    return f'<code style="background-color:{palette.code_bg}">{html.escape(tokens[idx].content)}</code>'


def _render_table_open(tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    palette: Palette = options.get("bubble_palette", LIGHT)
    # Qt rich text draws no table borders unless asked to.
    return (
        f'<table border="1" cellspacing="0" cellpadding="4" '
        f'style="border-collapse: collapse; border-color: {palette.code_border};">\n'
    )


@lru_cache(maxsize=8)
def _formatter(style: str) -> Any:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(noclasses=True, nowrap=True, style=style)


@lru_cache(maxsize=64)
def _lexer(lang: str) -> Any:
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def highlight_code(code: str, lang: str, palette: Palette = LIGHT) -> str:
    """Syntax-highlighted HTML spans for ``code`` (escaped plain text if the language is unknown)."""
    from pygments import highlight

    lexer = _lexer(lang.lower()) if lang else None
    if lexer is not None:
        out: str = highlight(code, lexer, _formatter(palette.pygments_style))
        return out
    return html.escape(code)


def _render_fence(tokens: list[Any], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    palette: Palette = options.get("bubble_palette", LIGHT)
    info = (token.info or "").strip().split(maxsplit=1)
    lang = info[0] if info else ""
    code = token.content
    if code.endswith("\n"):
        code = code[:-1]
    codes: list[str] = env.setdefault("codes", [])
    number = env.get("code_offset", 0) + len(codes)
    codes.append(code)
    label = html.escape(lang) if lang else ""
    # An empty cell at a table's end makes Qt's importer put no block after the table.
    body = highlight_code(code, lang, palette) if code.strip("\n") else "&nbsp;"
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="0" bgcolor="{palette.code_bg}" '
        f'style="margin-top: 4px; margin-bottom: 4px;">'
        f'<tr><td><span style="color:{palette.muted}; font-size:small">{label}</span>'
        f"</td>"
        f'<td align="right"><a href="copy:{number}" style="color:{palette.link}; text-decoration:none; '
        f'font-size:small">{_COPY_LABEL}</a></td></tr>'
        # pre-wrap: Qt's rich text cannot scroll one block sideways, and a long unwrapped line widens
        # the table past the message, clipping the line and the Copy link (issue 16)
        f'<tr><td colspan="2"><pre style="margin:0; white-space:pre-wrap">{body}</pre></td></tr></table>\n'
    )


# Set by the UI to the translated word for "Copy" (markdown rendering itself is Qt-free).
_COPY_LABEL = "Copy"


def set_copy_label(label: str) -> None:
    """The link text shown on each code block (translated by the UI)."""
    global _COPY_LABEL
    _COPY_LABEL = html.escape(label)


def copy_label() -> str:
    """The link text shown on each code block, as set by ``set_copy_label``."""
    return html.unescape(_COPY_LABEL)


@dataclass(frozen=True)
class RenderedBlock:
    html: str
    codes: tuple[str, ...]


def render_block(block: str, code_offset: int = 0, palette: Palette = LIGHT) -> RenderedBlock:
    """Render one block; its code blocks are numbered from ``code_offset``."""
    env: dict[str, Any] = {"code_offset": code_offset, "codes": []}
    out = _markdown(palette).render(block, env)
    # An empty heading ("# " on its own) shows nothing, and Qt merges or keeps such empty blocks
    # depending on what precedes them in one setHtml/insertHtml: leave it out.
    out = _EMPTY_HEADING.sub("", out)
    n = 1
    while n:  # "> " alone (also nested), a paragraph of a form feed: Qt drops those in one
        out, n = _EMPTY_BLOCK.subn("", out)  # setHtml, not when appended
    # A rule opening a quote: appended after other blocks, Qt adds an empty block before it.
    out = _QUOTE_OPENING_RULE.sub(r"\1<hr />\n<blockquote>\n", out)
    # Empty list items and table cells get a no-break space: Qt's importer merges an empty item
    # into what follows, and puts no block after a table whose last cell is empty.
    out = _EMPTY_ITEM.sub(r"<\1>&nbsp;</\2>", out)
    # No trailing newline: Qt turns it into a space at the end of the block.
    out = out.rstrip("\n")
    return RenderedBlock(out, tuple(env["codes"]))


@dataclass
class Rendered:
    html: str
    codes: list[str] = field(default_factory=list)


def render_markdown(text: str, palette: Palette = LIGHT) -> Rendered:
    """The one-shot render: every block rendered in order."""
    parts: list[str] = []
    codes: list[str] = []
    for block in split_blocks(text):
        r = render_block(block, len(codes), palette)
        parts.append(r.html)
        codes.extend(r.codes)
    return Rendered("".join(parts), codes)


# The start of a line whose kind is settled: block markers (if any) and then a letter. Text
# appended to such a line cannot turn it into another kind of block.
_SETTLED = re.compile(r"^ {0,3}(?:(?:[-+*]|\d{1,9}[.)])[ \t]+|>[ \t]?|#{1,6}[ \t]+)*[^\W\d_]")
_LINE_MARKERS = re.compile(r"^ {0,3}(?:(?:[-+*]|\d{1,9}[.)])[ \t]+|>[ \t]?|#{1,6}[ \t]+)*")
# Characters that can change how the text before them renders on a settled line (emphasis, code,
# links, escapes, a heading's closing #s, table cells). "-", "=", "+", "!" and "(" only matter at a
# line's start or right after one of these, which a settled line is past.
_INLINE_SPECIAL = frozenset("*_`~[]<>)#|\\&")


def plain_extends(text: str) -> bool:
    """Whether ``text`` appended to a settled line of the shown tail renders as itself."""
    return "\n" not in text and _INLINE_SPECIAL.isdisjoint(text)


def _close_inline(line: str) -> tuple[str, bool]:
    """``line`` (the open tail's last line) with unfinished emphasis, strike-through and code spans
    closed, and delimiters at its very end (an opener with nothing after it yet) left out.

    Returns the text to render and whether its rendered end is the source's end (so text appended
    later shows as a render would). A heuristic: left-flanking runs open, right-flanking ones close.
    """
    start = _LINE_MARKERS.match(line)
    i = start.end() if start else 0
    n = len(line)
    stack: list[str] = []
    code_run = 0
    cut = n  # where a dangling delimiter run at the end starts
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c not in "`*_~":
            i += 1
            continue
        j = i
        while j < n and line[j] == c:
            j += 1
        run = j - i
        prev = line[i - 1] if i > 0 else " "
        nxt = line[j] if j < n else ""
        if c == "`":
            if code_run == 0:
                if not nxt:
                    cut = i
                code_run = run
            elif run == code_run:
                code_run = 0
        elif code_run == 0:
            delim = c * min(run, 3) if c != "~" else "~~"
            if c == "~" and run < 2:
                pass
            elif stack and stack[-1] == delim and not prev.isspace():
                stack.pop()
            elif not nxt:
                cut = i
            elif not nxt.isspace() and (c != "_" or not prev.isalnum()):
                stack.append(delim)
        i = j
    exact = cut == n
    body = line[:cut]
    if code_run and cut < n:
        code_run = 0  # the dangling run was the code span's opener
    if stack or code_run:
        stripped = body.rstrip()
        exact = exact and stripped == body
        body = stripped + "`" * code_run + "".join(reversed(stack))
    return body, exact


def open_tail_source(tail: str) -> tuple[str, bool, str]:
    """The still-open block as it should be shown while it streams; whether plain text appended
    to it shows as a render would (see ``StreamingMarkdown.render_tail``); and the blanks at its
    end that the shown text leaves out (to be put back before the next plain text).

    An unclosed code fence already renders as a code block to the end; a fence line still being
    typed inside it is left out. Outside code the last line gets its open emphasis closed.
    """
    fence: str | None = None
    pos = 0
    n = len(tail)
    last_start = 0
    while pos < n:
        end = tail.find("\n", pos)
        if end < 0:
            end = n
        line = tail[pos:end]
        last_start = pos
        if fence is None:
            m = _FENCE_OPEN.match(line)
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
        else:
            stripped = line.strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = None
        pos = end + 1
    last = tail[last_start:] if not tail.endswith("\n") else ""
    if fence is not None:
        stripped = last.strip()
        if last and stripped and set(stripped) <= {fence[0]} and tail.endswith(last):
            return tail[: len(tail) - len(last)], False, ""  # a closing fence on its way
        return tail, False, ""  # plain text appended would land after the code block
    if not last:
        return tail, False, ""
    core = last.rstrip(" \t")
    if not core:
        return tail, False, ""
    closed, exact = _close_inline(core)
    exact = exact and bool(_SETTLED.match(core))
    # trailing blanks render as nothing: they are left out and given back with the next plain text
    return tail[: len(tail) - len(last)] + closed, exact, last[len(core) :] if exact else ""


@dataclass(frozen=True)
class StreamUpdate:
    """What changed since the last update.

    ``frozen_html``: blocks that just closed, rendered once and appended for good.
    ``tail``: the source text of the still-open block; the view shows it rendered
    (``StreamingMarkdown.render_tail``) and appends plain text to it while that renders the same.
    """

    frozen_html: str
    tail: str


class StreamingMarkdown:
    """Accumulates streamed text; each ``update()`` renders only the blocks that just closed.

    Work per update is the size of the newly closed blocks plus a scan of the open tail, so the
    whole answer costs about one one-shot render; ``update(final=True)`` closes the tail too.
    """

    def __init__(self, palette: Palette = LIGHT) -> None:
        self.palette = palette
        self._frozen_parts: list[str] = []
        self._frozen_source: list[str] = []
        self._codes: list[str] = []
        self._chunks: list[str] = []
        self._pending = ""  # text after the frozen blocks (the open tail)
        self._cutter = _BlockCutter()  # where the open tail's scan for cuts stands

    @property
    def text(self) -> str:
        """All text fed so far."""
        return "".join(self._frozen_source) + self._pending + "".join(self._chunks)

    def feed(self, chunk: str) -> None:
        """Add text (cheap; nothing is rendered until ``update``)."""
        if chunk:
            self._chunks.append(chunk)

    def take_plain(self) -> str | None:
        """The text fed since the last update when it only extends the open tail's last line
        with characters that render as themselves (no new line, so no new cut is possible, and
        no Markdown syntax): it is added to the tail and returned, and the caller appends it as
        plain text. ``None`` when a full ``update`` is needed."""
        pending = self._pending
        if not pending or pending[-1] == "\n":
            return None
        chunks = self._chunks
        new = chunks[0] if len(chunks) == 1 else "".join(chunks)
        if not plain_extends(new):
            return None
        chunks.clear()
        self._pending = pending + new
        return new

    def extend_line(self, text: str) -> bool:
        """Add ``text`` if it only extends the open tail's last line (nothing else waiting, no
        new line, so no new cut is possible); the caller then appends it as plain text."""
        pending = self._pending
        if self._chunks or not pending or pending[-1] == "\n" or not plain_extends(text):
            return False
        self._pending = pending + text
        return True

    def update(self, final: bool = False) -> StreamUpdate:
        """Render newly closed blocks; ``final`` closes the open tail as well."""
        new = "".join(self._chunks)
        self._chunks.clear()
        line_started = "\n" in new or (self._pending.endswith("\n") and bool(new))
        self._pending += new
        if not final and not line_started:
            # A cut is decided by the first character of a line: no new line, no new cut.
            return StreamUpdate("", self._pending)
        # Only the open tail can contain new cuts; a cut found there never moves again.
        pending = self._pending
        cuts = self._cutter.scan(pending, final)
        if final and pending:
            cuts.append(len(pending))
        if not cuts:
            return StreamUpdate("", pending)
        new_parts: list[str] = []
        last = 0
        for cut in cuts:
            block = pending[last:cut]
            r = render_block(block, len(self._codes), self.palette)
            new_parts.append(r.html)
            self._codes.extend(r.codes)
            self._frozen_source.append(block)
            last = cut
        self._frozen_parts.extend(new_parts)
        self._pending = pending[last:]
        if final:
            self._cutter = _BlockCutter()
        else:
            self._cutter.drop(last)
        return StreamUpdate("".join(new_parts), self._pending)

    def render_tail(self) -> tuple[RenderedBlock, bool, str]:
        """The still-open block rendered as it stands (``open_tail_source``: open fences shown as
        code, unfinished emphasis closed), its code blocks numbered after the frozen ones;
        whether plain text appended to it by ``take_plain``/``extend_line`` shows as a render
        would (False inside a code block, or when something at the end was left out); and the
        trailing blanks the render leaves out, to insert before that plain text."""
        source, exact, blanks = open_tail_source(self._pending)
        if not source.strip():
            return RenderedBlock("", ()), False, ""
        return render_block(source, len(self._codes), self.palette), exact, blanks

    @property
    def html(self) -> str:
        """The rendered (closed) blocks so far; everything after ``update(final=True)``."""
        return "".join(self._frozen_parts)

    @property
    def codes(self) -> list[str]:
        return list(self._codes)
