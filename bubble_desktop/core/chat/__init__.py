"""Conversations (SQLite), prompt assembly with numbered sources, and the chat service."""

from bubble_desktop.core.chat.prompt import PromptPlan, build_prompt
from bubble_desktop.core.chat.service import Answer, ChatService
from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.chat.store import Conversation, ConversationStore, SearchHit, StoredMessage

__all__ = [
    "Answer",
    "ChatService",
    "Conversation",
    "ConversationStore",
    "PromptPlan",
    "SearchHit",
    "Source",
    "StoredMessage",
    "build_prompt",
]
