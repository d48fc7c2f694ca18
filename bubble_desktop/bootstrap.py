"""What the app and its smoke test both build on: interpreter settings and the real services.

In a module of its own so that ``app`` (which runs the smoke test on ``--smoke-test``) and
``smoke`` (which builds the window as the app does) do not import each other.
"""

from __future__ import annotations

import functools
import sys
from typing import Any


def configure_interpreter() -> None:
    """Hand the GIL over more often than the default 5 ms.

    The model's generate loop runs Python in the inference thread; every call the event loop
    makes into Python (slots, overrides) waits for the GIL up to one switch interval. 1 ms keeps
    the GUI's stalls short at a small cost in generation speed (tests/bench/gui_responsiveness.py).
    """
    sys.setswitchinterval(0.001)


def open_knowledge(paths: Any, settings: Any) -> Any:
    from bubble_desktop.core.kb.service import KnowledgeService

    return KnowledgeService(paths, settings.knowledge)


def build_context(paths: Any, settings: Any, notices: list[str], knowledge_now: bool = True) -> Any:
    """The real services behind the window. With ``knowledge_now=False`` the knowledge service
    is opened by ``MainWindow.finish_startup`` once the window is on screen."""
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.consent import ConsentStore
    from bubble_desktop.core.llm.gguf_import import import_gguf
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.ui.main_window import AppContext

    store = ConversationStore(paths.chats_db)
    knowledge = open_knowledge(paths, settings) if knowledge_now else None
    chat_service = ChatService(paths, knowledge, None, store)
    return AppContext(
        paths=paths,
        settings=settings,
        store=store,
        chat_service=chat_service,
        load_function=load_model,
        knowledge=knowledge,
        consent=ConsentStore(paths.consent_file),
        import_gguf=import_gguf,
        notices=notices,
        knowledge_factory=None if knowledge_now else functools.partial(open_knowledge, paths, settings),
    )
