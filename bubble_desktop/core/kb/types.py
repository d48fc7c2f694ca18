"""Immutable records that cross threads: what the UI, the CLI and the chat service see."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    """One knowledge base as listed to the user. ``dim`` is None until something was indexed."""

    name: str
    documents: int
    chunks: int
    embedding_model: str
    dim: int | None
    created: float
    backend: str = "edge"  # edge, qdrant, milvus-lite or milvus
    location: str = ""  # the server URL of a server backend
    notice: str = ""  # a missing feature the store falls back from (e.g. no BM25 on this Milvus)


@dataclass(frozen=True)
class DocumentInfo:
    """One source file of a knowledge base; ``status`` is indexed, pending or failed."""

    doc_id: str
    path: str
    type: str
    chunks: int
    size: int
    added: float
    status: str
    error: str | None = None


@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed, and why, in words the user understands."""

    path: str
    reason: str


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    chunks_done: int
    current_file: str
    chunks_per_s: float
    eta_s: float | None
    # the file being parsed, page by page (long PDFs, OCR): pages done / total; 0/0 when not paged
    pages_done: int = 0
    pages_total: int = 0
    parsing_file: str = ""


@dataclass(frozen=True)
class IngestReport:
    indexed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: tuple[FailedFile, ...] = ()
    cancelled: bool = False
    chunks_added: int = 0
    # indexed files with something the user should know (a page OCR found nothing on)
    warnings: tuple[FailedFile, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every file was indexed or already current (the CLI's exit 0)."""
        return not self.failed and not self.cancelled


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``position`` reads like "page 3", "line 12" or "row 4"; ``page`` is its number
    for paged documents (PDF, image, slides), else None."""

    score: float
    path: str
    text: str
    position: str
    kb: str
    doc_id: str
    title: str | None = None
    heading: str | None = None
    page: int | None = None
    # how well the chunk matches the question, whatever its rank: the cosine similarity of the dense
    # vectors, the share of the question's keywords the chunk contains, and the two combined
    # (core/kb/relevance.py) — what the "minimum relevance" setting is compared with
    similarity: float | None = None
    keyword: float | None = None
    relevance: float | None = None

    def to_json(self) -> dict[str, object]:
        """The stable ``--json`` shape of a hit (extra keys may be added, never removed)."""
        return {
            "score": round(self.score, 6),
            "path": self.path,
            "text": self.text,
            "position": self.position,
            "kb": self.kb,
            "doc_id": self.doc_id,
            "title": self.title,
            "heading": self.heading,
            "page": self.page,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
            "keyword": None if self.keyword is None else round(self.keyword, 6),
            "relevance": None if self.relevance is None else round(self.relevance, 6),
        }


@dataclass(frozen=True)
class Segment:
    """A parsed piece of a document before chunking.

    ``unit``/``start`` give the position ("line", 12); ``atomic`` segments (table rows, JSONL records)
    are packed whole into chunks; ``standalone`` ones (Q&A entries) always become their own chunk.
    """

    text: str
    unit: str
    start: int
    heading: str | None = None
    title: str | None = None
    atomic: bool = False
    standalone: bool = False


@dataclass(frozen=True)
class Chunk:
    """``page`` is the 1-based page (PDF, image frame) or slide number; None for other units."""

    text: str
    position: str
    heading: str | None = None
    title: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    path: str
    type: str
    size: int
    content_hash: str
    segments: tuple[Segment, ...] = field(default=())
    warnings: tuple[str, ...] = ()
