"""Where an answer came from: one numbered source, from a knowledge base or the web."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

SourceKind = Literal["kb", "web"]


@dataclass(frozen=True)
class Source:
    """A numbered source given to the model (cited as ``[index]``) and stored with the answer.

    Knowledge sources carry ``path``, ``position`` (e.g. "page 3", "line 12"), ``kb`` and
    ``score``; web sources carry ``url``, ``date`` and the publisher in ``site``.
    ``text`` is the chunk text or the web snippet, exactly as the model saw it.
    """

    index: int
    kind: SourceKind
    title: str
    text: str
    path: str = ""
    url: str = ""
    position: str = ""
    score: float | None = None
    date: str = ""
    kb: str = ""
    site: str = ""
    doc_id: str = ""
    page: int | None = None  # 1-based page (PDF, image) or slide of a knowledge source, for the viewer

    @property
    def page_label(self) -> str:
        """Short locator for a list of sources: "report.pdf · p. 12" (just the name without a page)."""
        name = (self.path.replace("\\", "/").rsplit("/", 1)[-1] if self.path else "") or self.title
        return f"{name} · p. {self.page}" if self.page else name

    @property
    def snippet(self) -> str:
        return self.text

    @property
    def where(self) -> str:
        """A short locator for people: the URL, or path and chunk number."""
        if self.kind == "web":
            return self.url
        loc = self.path or self.title
        return f"{loc} ({self.position})" if self.position else loc

    def renumbered(self, index: int) -> Source:
        return replace(self, index=index)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("index", 0)
        values.setdefault("kind", "kb")
        values.setdefault("title", "")
        values.setdefault("text", "")
        if values.get("position") is None:
            values["position"] = ""
        values["position"] = str(values["position"])
        if not isinstance(values.get("page"), int) or isinstance(values.get("page"), bool):
            values["page"] = None
        return cls(**values)
