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
    quicken_pyside_import_check()


def quicken_pyside_import_check() -> None:
    """Give PySide6's per-import check the file's bytes instead of ``inspect.getsource``.

    Once PySide6 is imported, every module imported after it is searched for the word "PySide6"
    (its ``__feature__`` switching, PYSIDE-2029) through ``inspect.getsource``: linecache, tokenize
    and a copy of every line. The app imports torch, transformers and sentence-transformers after
    Qt (on the first model or knowledge load, ~4,800 modules): 8.2–9.2 s with that check, 7.2–8.4 s
    with this one (interleaved runs here). Same answer: the same word in the same file; anything
    that is not a ``.py`` file on disk goes to PySide's own check. Private API, so only when found.
    """
    for name in ("shibokensupport.feature", "PySide6.support.feature", "__feature__"):
        feature = sys.modules.get(name)
        original = getattr(feature, "_mod_uses_pyside", None)
        if original is None or getattr(original, "quickened", False):
            continue

        def uses_pyside(module: Any, original: Any = original) -> bool:
            path = getattr(module, "__file__", None)
            if not isinstance(path, str) or not path.endswith(".py"):
                return bool(original(module))
            try:
                with open(path, "rb") as f:
                    return b"PySide6" in f.read()
            except OSError:
                return bool(original(module))

        uses_pyside.quickened = True  # type: ignore[attr-defined]
        feature._mod_uses_pyside = uses_pyside  # type: ignore[union-attr]


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
