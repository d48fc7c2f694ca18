"""Knowledge bases: parse the user's files, chunk, embed, store in Qdrant (Edge or server), retrieve.

The public face is :class:`bubble_desktop.core.kb.service.KnowledgeService`. Nothing heavy is imported
here: torch, sentence-transformers, qdrant and the parsers load inside the functions that need them.
"""

from __future__ import annotations

from bubble_desktop.core.kb.types import (
    DocumentInfo,
    FailedFile,
    Hit,
    IngestProgress,
    IngestReport,
    KnowledgeBaseInfo,
)

__all__ = [
    "DocumentInfo",
    "FailedFile",
    "Hit",
    "IngestProgress",
    "IngestReport",
    "KnowledgeBaseInfo",
]
