"""Markdown helpers for the conversation export: rewrite [n] citations outside code only, close open fences.

An answer is model output: its code blocks hold things like ``sys.argv[1]`` that look like citations, and an
answer stopped mid-block leaves its fence open, which would swallow everything after it (the footnotes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from bubble_desktop.core.chat.prompt import CITATION

# CommonMark: up to three spaces, then at least three backticks or tildes.
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")


def _split_fenced(text: str) -> tuple[list[tuple[bool, str]], str | None]:
    """(is_code, chunk) pieces in order, and the fence that is still open at the end (None if all closed)."""
    pieces: list[tuple[bool, str]] = []
    prose: list[str] = []
    code: list[str] = []
    open_fence: str | None = None
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        match = _FENCE.match(bare)
        if open_fence is None:
            # A backtick fence's info string may not contain a backtick (CommonMark 4.5).
            if match and not (match.group(2)[0] == "`" and "`" in match.group(3)):
                if prose:
                    pieces.append((False, "".join(prose)))
                    prose = []
                open_fence = match.group(2)
                code.append(line)
            else:
                prose.append(line)
        else:
            code.append(line)
            if (
                match
                and match.group(2)[0] == open_fence[0]
                and len(match.group(2)) >= len(open_fence)
                and not match.group(3).strip()
            ):
                pieces.append((True, "".join(code)))
                code = []
                open_fence = None
    if prose:
        pieces.append((False, "".join(prose)))
    if code:
        pieces.append((True, "".join(code)))
    return pieces, open_fence


def _inline_pieces(text: str) -> Iterator[tuple[bool, str]]:
    """Split prose into (is_code, chunk) around inline code spans (n backticks up to the next run of n)."""
    pos = 0
    scan = 0
    while True:
        opening = _BACKTICKS.search(text, scan)
        if opening is None:
            break
        width = len(opening.group(0))
        closing = None
        for candidate in _BACKTICKS.finditer(text, opening.end()):
            if len(candidate.group(0)) == width:
                closing = candidate
                break
        if closing is None:
            # An unmatched run is literal text; keep looking after it.
            scan = opening.end()
            continue
        if opening.start() > pos:
            yield False, text[pos : opening.start()]
        yield True, text[opening.start() : closing.end()]
        pos = scan = closing.end()
    if pos < len(text):
        yield False, text[pos:]


def outside_code(text: str, rewrite: Callable[[str], str]) -> str:
    """Apply ``rewrite`` to the prose of a Markdown text, leaving fenced blocks and inline code as they are;
    a fence left open (an answer cut off mid-block) is closed."""
    pieces, open_fence = _split_fenced(text)
    out: list[str] = []
    for is_code, chunk in pieces:
        if is_code:
            out.append(chunk)
        else:
            out.extend(part if code else rewrite(part) for code, part in _inline_pieces(chunk))
    result = "".join(out)
    if open_fence is not None:
        result = result.rstrip("\n") + "\n" + open_fence + "\n"
    return result


def footnote_citations(text: str, message_number: int, numbers: set[int]) -> str:
    """Turn the citations [n] that name a listed source into footnote references [^k-n], outside code."""

    def rewrite(prose: str) -> str:
        return CITATION.sub(
            lambda m: f"[^{message_number}-{m.group(1)}]" if int(m.group(1)) in numbers else m.group(0),
            prose,
        )

    return outside_code(text, rewrite)
