"""How a source under an answer or a search hit is named and described: plain functions and data,
shared by the chat view, the Knowledge tab and the source viewer (kept apart from those widgets so
none of them imports another: tests/core/test_boundaries.py forbids import cycles)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication

from bubble_desktop.ui.i18n import QT_TRANSLATE_NOOP


@dataclass(frozen=True)
class SourceView:
    """A source shown under an answer: a knowledge chunk (file) or a web page (url)."""

    number: int
    title: str
    kind: str  # "kb" or "web"
    target: str  # file path or url
    text: str = ""  # the chunk text, shown when the file cannot be opened
    score: float | None = None
    position: str = ""  # "line 40", "page 3", "row 7" as the knowledge base stored it
    page: int | None = None  # 1-based page of a PDF/image/slide: the viewer opens it
    kb: str = ""


def source_view(number: int, source: Any) -> SourceView:
    """Adapt whatever the chat service returns as a source (dataclass or dict) for display."""

    def get(name: str, default: Any = None) -> Any:
        if isinstance(source, dict):
            return source.get(name, default)
        return getattr(source, name, default)

    url = get("url") or ""
    path = get("path") or get("source") or ""
    kind = get("kind") or ("web" if url else "kb")
    if kind not in ("kb", "web"):
        kind = "web" if url else "kb"
    target = str(url or path)
    title = str(get("title") or (path.rsplit("/", 1)[-1] if path else url) or f"[{number}]")
    return SourceView(
        int(get("number", number) or number),
        title,
        kind,
        target,
        str(get("text") or get("snippet") or get("body") or ""),
        get("score"),
        str(get("position") or ""),
        page if isinstance(page := get("page"), int) and not isinstance(page, bool) else None,
        str(get("kb") or ""),
    )


_POSITION_UNITS = {
    "page": QT_TRANSLATE_NOOP("KnowledgeTab", "page %1"),
    "line": QT_TRANSLATE_NOOP("KnowledgeTab", "line %1"),
    "row": QT_TRANSLATE_NOOP("KnowledgeTab", "row %1"),
    "paragraph": QT_TRANSLATE_NOOP("KnowledgeTab", "paragraph %1"),
    "item": QT_TRANSLATE_NOOP("KnowledgeTab", "item %1"),
    "section": QT_TRANSLATE_NOOP("KnowledgeTab", "section %1"),
}


def position_text(position: str) -> str:
    """A hit's position ("line 12") in the interface language."""
    unit, _, number = str(position).partition(" ")
    label = _POSITION_UNITS.get(unit)
    if label and number.isdigit():
        return QCoreApplication.translate("KnowledgeTab", label).replace("%1", number)
    return str(position)


TOOLTIP_CHARS = 700


def excerpt(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + " …"


def _file_name(source: SourceView) -> str:
    if source.kind == "kb" and source.target:
        return source.target.replace("\\", "/").rsplit("/", 1)[-1] or source.title
    return source.title


def source_location(source: SourceView) -> str:
    """Where in its document a source sits: "p. 12" for pages, "line 40" / "row 7" otherwise."""
    if source.kind != "kb":
        return ""
    if source.page and not source.position.startswith("slide "):
        return QCoreApplication.translate("SourceViewer", "p. %1").replace("%1", str(source.page))
    return position_text(source.position) if source.position else ""


def source_label(source: SourceView) -> str:
    """A source as listed under an answer: "report.pdf · p. 12", "LICENSE · line 40"."""
    where = source_location(source)
    name = _file_name(source)
    return f"{name} · {where}" if where else name


def source_tooltip(source: SourceView) -> str:
    """Rich text: the source's name and place, then the cited passage (cut to a readable length)."""
    passage = excerpt(source.text, TOOLTIP_CHARS)
    head = html.escape(source_label(source))
    target = html.escape(source.target)
    body = (
        html.escape(passage)
        if passage
        else html.escape(QCoreApplication.translate("SourceViewer", "(no passage stored)"))
    )
    click = html.escape(QCoreApplication.translate("SourceViewer", "Click to open the passage."))
    return (
        f"<qt><b>[{source.number}] {head}</b><br><span style='color: gray'>{target}</span>"
        f"<p>{body}</p><i>{click}</i></qt>"
    )
