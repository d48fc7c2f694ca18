"""ChatService: question + settings snapshot -> retrieval (knowledge bases, web) -> prompt -> streamed answer.

What the GUI's inference worker and ``bubble-cli ask`` call. ``ask`` runs knowledge-base retrieval
and web search in parallel on daemon threads (the caller only waits; a web search past its
deadline never holds the answer up), builds a prompt with numbered sources within the model's
context window, saves the question, and returns an :class:`Answer` whose sources and notices are
known before the first chunk. Iterating the answer streams text; when it ends, the assistant
message is saved as complete, stopped or error (partial text kept).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bubble_desktop.core.chat.prompt import PromptPlan, build_prompt
from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.chat.store import ConversationStore, MessageStatus, StoredMessage
from bubble_desktop.core.errors import ConversationError, UserFacingError, WebSearchError
from bubble_desktop.core.i18n import N_
from bubble_desktop.core.llm.base import ChatMessage, ChatModel, Generation, GenerationStats
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from bubble_desktop.core.web.search import WebResult, WebSearcher

log = logging.getLogger(__name__)
T = TypeVar("T")


class Retriever(Protocol):
    """What ChatService needs from the knowledge service (``KnowledgeService.search``): ranked hits."""

    def search(
        self,
        names: str | Sequence[str],
        query: str,
        top_k: int | None = None,
        score_threshold: float | None = None,
        hybrid: bool | None = None,
    ) -> list[Any]: ...


def _in_daemon_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """Run ``fn`` on a daemon thread; a stuck call never blocks interpreter exit or a test's end."""
    future: Future[T] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting caller
            future.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def _wait(futures: Sequence[Future[Any]], cancel: threading.Event, timeout: float) -> None:
    """Wait for all futures, giving up early when ``cancel`` is set or ``timeout`` passes."""
    end = time.monotonic() + timeout
    for f in futures:
        while not f.done():
            if cancel.is_set() or time.monotonic() > end:
                return
            try:
                f.exception(timeout=0.02)
            except Exception:  # noqa: BLE001 - only waiting here; the result is read later
                pass


@dataclass(frozen=True)
class Retrieved:
    """What retrieval found, before prompt assembly."""

    sources: tuple[Source, ...]
    notices: tuple[str, ...]
    web_used: bool
    retrieval_s: float
    web_s: float


@dataclass
class Answer:
    """One answer being generated. Sources, notices and ids are set before the first chunk."""

    conversation_id: int
    user_message_id: int
    message_id: int
    sources: tuple[Source, ...]
    notices: tuple[str, ...]
    web_used: bool
    prompt: PromptPlan | None
    timings: dict[str, float] = field(default_factory=dict)
    stats: GenerationStats | None = None
    status: str | None = None  # complete / stopped / error, once finished
    _generation: Generation | None = None
    _finish: Callable[[Answer, str, Exception | None], None] | None = None
    # saves the text so far every ``checkpoint_s`` while streaming (a crash keeps it)
    _checkpoint: Callable[[Answer, str], None] | None = None
    checkpoint_s: float = 2.0
    _parts: list[str] = field(default_factory=list)
    _started: bool = False
    # a regenerated answer: the version it replaced on screen (selected again if this one stays empty)
    _previous_version: int | None = None

    def __iter__(self) -> Iterator[str]:
        if self._started:
            return
        self._started = True
        error: Exception | None = None
        try:
            if self._generation is not None:
                last_saved = time.monotonic()
                for chunk in self._generation:
                    self._parts.append(chunk)
                    if self._checkpoint is not None and time.monotonic() - last_saved >= self.checkpoint_s:
                        self._checkpoint(self, self.text)
                        last_saved = time.monotonic()
                    yield chunk
        except Exception as exc:
            error = exc
            raise
        finally:
            if self._generation is not None:
                self._generation.close()  # a consumer that stopped early must not leave generation running
            if self._finish is not None:
                self._finish(self, self.text, error)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def run(self) -> str:
        """Consume the whole answer; return its text."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stop early (saved as stopped) or, if never iterated, record it as stopped now."""
        if not self._started:
            self._started = True
            if self._generation is not None:
                self._generation.close()
            if self._finish is not None:
                self._finish(self, "", None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "text": self.text,
            "status": self.status,
            "sources": [s.to_dict() for s in self.sources],
            "notices": list(self.notices),
            "web_used": self.web_used,
            "stats": self.stats.to_dict() if self.stats else None,
            "timings": dict(self.timings),
        }


def hit_to_source(hit: Any, index: int) -> Source:
    """A knowledge-base hit (``kb.types.Hit``) as a numbered source."""
    path = str(getattr(hit, "path", "") or "")
    title = getattr(hit, "title", None) or (path.replace("\\", "/").rsplit("/", 1)[-1] if path else "")
    return Source(
        index=index,
        kind="kb",
        title=str(title),
        text=str(getattr(hit, "text", "")),
        path=path,
        position=str(getattr(hit, "position", "") or ""),
        score=float(getattr(hit, "score", 0.0)),
        kb=str(getattr(hit, "kb", "") or ""),
        doc_id=str(getattr(hit, "doc_id", "") or ""),
        page=page if isinstance(page := getattr(hit, "page", None), int) else None,
    )


def web_to_source(result: WebResult, index: int) -> Source:
    return Source(
        index=index,
        kind="web",
        title=result.title,
        text=result.snippet,
        url=result.url,
        date=result.date,
        site=result.source,
    )


class ChatService:
    """Orchestrates retrieval, prompt assembly, generation and saving; safe to call from a worker thread."""

    def __init__(
        self,
        paths: Paths,
        knowledge: Retriever | None = None,
        web: WebSearcher | None = None,
        store: ConversationStore | None = None,
    ) -> None:
        self.paths = paths
        self.knowledge = knowledge
        self._web = web
        self._own_store = store is None
        self.store = store if store is not None else ConversationStore(paths.chats_db)

    @property
    def web(self) -> WebSearcher:
        if self._web is None:
            from bubble_desktop.core.web.search import DdgsSearcher

            self._web = DdgsSearcher()
        return self._web

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    # -- retrieval ------------------------------------------------------------------------------

    def _search_kb(self, query: str, kb_names: Sequence[str], settings: Settings) -> list[Any]:
        assert self.knowledge is not None
        k = settings.knowledge
        hits = list(
            self.knowledge.search(
                list(kb_names), query, top_k=k.top_k, score_threshold=k.score_threshold, hybrid=k.hybrid
            )
        )
        hits.sort(key=lambda h: float(getattr(h, "score", 0.0)), reverse=True)
        return hits[: k.top_k]

    def retrieve(
        self,
        query: str,
        settings: Settings,
        kb_names: Sequence[str] = (),
        web: bool = False,
        cancel: threading.Event | None = None,
    ) -> Retrieved:
        """Knowledge-base and web sources for ``query``, fetched in parallel; failures become notices."""
        cancel = cancel or threading.Event()
        notices: list[str] = []
        started = time.perf_counter()
        kb_future: Future[tuple[list[Any], float]] | None = None
        web_future: Future[tuple[list[WebResult], float]] | None = None

        def timed(fn: Callable[[], list[T]]) -> Callable[[], tuple[list[T], float]]:
            def run() -> tuple[list[T], float]:
                t0 = time.perf_counter()
                out = fn()
                return out, time.perf_counter() - t0

            return run

        if kb_names:
            if self.knowledge is None:
                notices.append(N_("Knowledge bases are not available here; answered without them."))
            else:
                names = tuple(kb_names)
                kb_future = _in_daemon_thread(
                    timed(lambda: self._search_kb(query, names, settings)), "bubble-kb-retrieval"
                )
        if web:
            searcher = self.web
            web_settings = settings.web
            web_future = _in_daemon_thread(
                timed(lambda: searcher.search(query, web_settings)), "bubble-web-retrieval"
            )
        pending = [f for f in (kb_future, web_future) if f is not None]
        # the web searcher keeps its own deadline; this outer bound only guards against a broken one
        _wait(pending, cancel, timeout=settings.web.deadline_s + 60.0)

        sources: list[Source] = []
        retrieval_s = web_s = 0.0
        if kb_future is not None:
            if kb_future.done() and kb_future.exception() is None:
                hits, retrieval_s = kb_future.result()
                sources += [hit_to_source(h, 0) for h in hits]
            elif kb_future.done():
                exc = kb_future.exception()
                log.info("knowledge-base search failed: %r", exc)
                message = exc.message if isinstance(exc, UserFacingError) else f"{type(exc).__name__}: {exc}"
                notices.append(N_(f"Knowledge-base search failed ({message}); answered without it."))
        web_used = False
        if web_future is not None:
            web_used = True  # the question left this computer, whatever came back
            if web_future.done() and web_future.exception() is None:
                results, web_s = web_future.result()
                sources += [web_to_source(r, 0) for r in results]
                if not results:
                    notices.append(N_("Web search found nothing for this question."))
            elif web_future.done():
                exc = web_future.exception()
                notices.append(
                    exc.message if isinstance(exc, WebSearchError) else N_(f"Web search failed: {exc}")
                )
            elif not cancel.is_set():
                notices.append(N_("Web search did not answer in time; answered without the web."))
        numbered = tuple(s.renumbered(i) for i, s in enumerate(sources, start=1))
        total = time.perf_counter() - started
        return Retrieved(
            numbered, tuple(notices), web_used, retrieval_s or (total if kb_future else 0.0), web_s
        )

    # -- asking ---------------------------------------------------------------------------------

    @staticmethod
    def _history(messages: Sequence[StoredMessage]) -> list[ChatMessage]:
        """Earlier turns for the model: failed answers (and empty ones) are left out."""
        out = []
        for m in messages:
            if m.role not in ("user", "assistant"):
                continue
            if m.role == "assistant" and (m.status == "error" or not m.text.strip()):
                continue
            out.append(ChatMessage("user" if m.role == "user" else "assistant", m.text))
        return out

    def ask(
        self,
        model: ChatModel,
        question: str,
        settings: Settings,
        conversation_id: int | None = None,
        kb_names: Sequence[str] = (),
        web: bool = False,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Start answering ``question`` (in a new conversation unless ``conversation_id``)."""
        question = question.strip()
        if not question:
            raise ConversationError("There is no question to answer.", "Type a question first.")
        if conversation_id is None:
            conversation_id = self.store.create_conversation(question, kb_names, web)
            history: list[ChatMessage] = []
        else:
            self.store.get_conversation(conversation_id)
            history = self._history(self.store.messages(conversation_id))
            self.store.update_options(conversation_id, kb_names, web)
        user_id = self.store.add_message(conversation_id, "user", question)
        return self._answer(
            model, conversation_id, user_id, question, history, settings, kb_names, web, cancel
        )

    def ask_unsaved(
        self,
        model: ChatModel,
        question: str,
        settings: Settings,
        history: Sequence[ChatMessage] = (),
        kb_names: Sequence[str] = (),
        web: bool = False,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer ``question`` after ``history`` with retrieval and numbered sources, saving nothing
        (the API server's stateless requests). The answer's ids are 0."""
        question = question.strip()
        if not question:
            raise ConversationError("There is no question to answer.", "Type a question first.")
        return self._answer(model, 0, 0, question, list(history), settings, kb_names, web, cancel, save=False)

    def regenerate(
        self,
        model: ChatModel,
        conversation_id: int,
        settings: Settings,
        cancel: threading.Event | None = None,
        kb_names: Sequence[str] | None = None,
        web: bool | None = None,
    ) -> Answer:
        """Answer the last question again as a new version of its answer (the earlier versions are
        kept; see ``ConversationStore.select_version``)."""
        question = self.store.last_user_message(conversation_id)
        previous = self.store.answer_to(question)
        self.store.delete_after(previous or question)
        return self._resend(
            model, question, settings, cancel, kb_names, web, answer_id=previous.id if previous else None
        )

    def edit_and_resend(
        self,
        model: ChatModel,
        message_id: int,
        new_text: str,
        settings: Settings,
        cancel: threading.Event | None = None,
        kb_names: Sequence[str] | None = None,
        web: bool | None = None,
    ) -> Answer:
        """Replace an earlier question; everything after it is dropped and it is answered again."""
        if not new_text.strip():
            raise ConversationError("The edited message is empty.", "Type a question first.")
        edited = self.store.edit_message(message_id, new_text.strip())
        return self._resend(model, edited, settings, cancel, kb_names, web)

    def _resend(
        self,
        model: ChatModel,
        question: StoredMessage,
        settings: Settings,
        cancel: threading.Event | None,
        kb_names: Sequence[str] | None,
        web: bool | None,
        answer_id: int | None = None,
    ) -> Answer:
        """Answer ``question`` again with the history before it; the knowledge bases and web
        switch default to the conversation's. With ``answer_id`` the answer becomes a new version
        of that message."""
        conversation = self.store.get_conversation(question.conversation_id)
        earlier = [m for m in self.store.messages(question.conversation_id) if m.seq < question.seq]
        return self._answer(
            model,
            question.conversation_id,
            question.id,
            question.text,
            self._history(earlier),
            settings,
            conversation.kb_names if kb_names is None else kb_names,
            conversation.web if web is None else web,
            cancel,
            answer_id=answer_id,
        )

    def _answer(
        self,
        model: ChatModel,
        conversation_id: int,
        user_id: int,
        question: str,
        history: Sequence[ChatMessage],
        settings: Settings,
        kb_names: Sequence[str],
        web: bool,
        cancel: threading.Event | None,
        save: bool = True,
        answer_id: int | None = None,
    ) -> Answer:
        cancel = cancel or threading.Event()
        sent = time.perf_counter()
        retrieved = self.retrieve(question, settings, kb_names, web, cancel)
        t0 = time.perf_counter()
        notices = list(retrieved.notices)
        sampling = settings.sampling
        plan: PromptPlan | None = None
        window = settings.model.context_window or None
        try:
            plan = build_prompt(
                model,
                sampling.system_prompt,
                history,
                question,
                retrieved.sources,
                sampling.max_new_tokens,
                context_window=window,
            )
        except UserFacingError as exc:
            notices.append(exc.message)
        assembly_s = time.perf_counter() - t0
        sources = plan.sources if plan else ()
        if plan and plan.sources_dropped:
            notices.append(
                N_(
                    f"{plan.sources_dropped} source(s) did not fit the model's context window "
                    "and were left out."
                )
            )
        if plan and plan.history_turns_dropped:
            notices.append(
                N_(
                    f"The {plan.history_turns_dropped} oldest turn(s) did not fit the context window "
                    "and were left out."
                )
            )
        message_id = 0
        previous_version: int | None = None
        if save and answer_id is not None:
            message_id = answer_id
            previous_version = self.store.begin_version(
                answer_id,
                sources=sources,
                sampling=sampling.model_dump(),
                web_used=retrieved.web_used,
                notices=notices,
            )
        elif save:
            message_id = self.store.add_message(
                conversation_id,
                "assistant",
                "",
                status="streaming",
                sources=sources,
                sampling=sampling.model_dump(),
                web_used=retrieved.web_used,
                notices=notices,
            )
        finish = self._finish if save else self._settle
        answer = Answer(
            conversation_id=conversation_id,
            user_message_id=user_id,
            message_id=message_id,
            sources=sources,
            notices=tuple(notices),
            web_used=retrieved.web_used,
            prompt=plan,
            timings={
                "retrieval_s": retrieved.retrieval_s,
                "web_s": retrieved.web_s,
                "assembly_s": assembly_s,
            },
            _finish=finish,
            _checkpoint=self._checkpoint if save else None,
            _previous_version=previous_version,
        )
        if plan is None:
            answer.stats = GenerationStats(finish_reason="error", error=notices[-1])
        elif not cancel.is_set():
            answer._generation = model.stream(list(plan.messages), sampling, cancel)
        else:
            answer.stats = GenerationStats(finish_reason="cancelled")
        answer.timings["send_to_model_s"] = time.perf_counter() - sent
        if plan is None:
            answer._started = True
            finish(answer, "", None)
        return answer

    def _checkpoint(self, answer: Answer, text: str) -> None:
        try:
            self.store.save_partial(answer.message_id, text)
        except Exception:  # noqa: BLE001 - a failed checkpoint must not stop the answer
            log.exception("could not save the partial answer %s", answer.message_id)

    def _finish(self, answer: Answer, text: str, error: Exception | None) -> None:
        """Save the assistant message with its final status (called once, however iteration ended)."""
        stats, status = self._final_stats(answer, error)
        try:
            if answer._previous_version is not None and status != "complete" and not text.strip():
                # a regenerated answer stopped (or failed) before its first word: nothing to keep,
                # the version the user had is shown again
                self.store.discard_version(answer.message_id, answer._previous_version)
                return
            self.store.finish_message(answer.message_id, text, status, stats=stats.to_dict())
        except Exception:  # noqa: BLE001 - saving must not mask the answer; the row stays 'streaming'
            log.exception("could not save answer %s", answer.message_id)

    def _settle(self, answer: Answer, text: str, error: Exception | None) -> None:
        """Set the final stats and status of an answer that is not saved."""
        self._final_stats(answer, error)

    @staticmethod
    def _final_stats(answer: Answer, error: Exception | None) -> tuple[GenerationStats, MessageStatus]:
        generation = answer._generation
        stats = answer.stats
        if generation is not None and generation.stats is not None:
            stats = generation.stats
        if error is not None:
            message = (
                error.message if isinstance(error, UserFacingError) else f"{type(error).__name__}: {error}"
            )
            base = stats or GenerationStats()
            stats = GenerationStats(
                prompt_tokens=base.prompt_tokens,
                completion_tokens=base.completion_tokens,
                ttft_s=base.ttft_s,
                tokens_per_s=base.tokens_per_s,
                total_s=base.total_s,
                finish_reason="error",
                error=message,
            )
        if stats is None:
            # the consumer stopped iterating before the model finished
            stats = GenerationStats(finish_reason="cancelled")
        status: MessageStatus = "complete"
        if stats.finish_reason == "cancelled":
            status = "stopped"
        elif stats.finish_reason == "error":
            status = "error"
        answer.stats = stats
        answer.status = status
        return stats, status
