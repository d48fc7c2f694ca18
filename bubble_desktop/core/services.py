"""The services the UI and the CLI call: chat (retrieval + generation + conversations) and knowledge.

A thin re-export so consumers have one import place; nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bubble_desktop.core.chat.service import Answer, ChatService
from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.chat.store import ConversationStore
from bubble_desktop.core.web.search import DdgsSearcher, WebSearcher

if TYPE_CHECKING:
    from bubble_desktop.core.kb.service import KnowledgeService

__all__ = [
    "Answer",
    "ChatService",
    "ConversationStore",
    "DdgsSearcher",
    "KnowledgeService",
    "Source",
    "WebSearcher",
]


def __getattr__(name: str) -> Any:
    # KnowledgeService is loaded on first use, so importing this module stays light
    if name == "KnowledgeService":
        from bubble_desktop.core.kb.service import KnowledgeService

        return KnowledgeService
    raise AttributeError(name)
