"""The work the API hands to the inference owner: a plain chat answer, or one grounded in
knowledge bases (through ChatService, saved nowhere). Both run on the owner's worker thread."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bubble_desktop.core.api.owner import Job, JobMeta, JobText, Work
from bubble_desktop.core.api.protocol import StopScanner
from bubble_desktop.core.llm.base import ChatMessage, ChatModel, GenerationStats
from bubble_desktop.core.settings import SamplingSettings, Settings

if TYPE_CHECKING:
    from bubble_desktop.core.chat.service import ChatService


def _pump(chunks: Iterator[str], job: Job, stops: Sequence[str]) -> bool:
    """Send the chunks to the job's sink, cutting at a stop sequence; True if one was hit.
    The iterator is closed here either way (a stop sequence ends the generation at once)."""
    scanner = StopScanner(stops)
    try:
        for chunk in chunks:
            out = scanner.feed(chunk)
            if out:
                job.emit(JobText(out))
            if scanner.hit:
                break
        tail = scanner.flush()
        if tail:
            job.emit(JobText(tail))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return scanner.hit


def _ended(stats: GenerationStats | None, stop_hit: bool) -> GenerationStats:
    stats = stats or GenerationStats(finish_reason="cancelled")
    if stop_hit and stats.finish_reason in ("cancelled", "stop"):
        stats = dataclasses.replace(stats, finish_reason="stop")
    return stats


def chat_work(messages: Sequence[ChatMessage], sampling: SamplingSettings, stops: Sequence[str] = ()) -> Work:
    """Stream the model's answer to ``messages`` as they are."""
    msgs = list(messages)

    def work(model: ChatModel, job: Job) -> GenerationStats:
        generation = model.stream(msgs, sampling, job.cancel)
        hit = _pump(iter(generation), job, stops)
        generation.close()
        return _ended(generation.stats, hit)

    return work


def grounded_work(
    service: ChatService,
    question: str,
    history: Sequence[ChatMessage],
    settings: Settings,
    kb_names: Sequence[str],
    web: bool,
    stops: Sequence[str] = (),
    save: bool = False,
) -> Work:
    """Retrieve from the knowledge bases (and the web), then stream the cited answer; the numbered
    sources go out as a JobMeta before the first text. With ``save`` the exchange (the client's
    earlier turns included) becomes a new conversation in the app's history."""
    turns = list(history)
    names = tuple(kb_names)

    def work(model: ChatModel, job: Job) -> GenerationStats:
        meta: dict[str, object] = {}
        if save:
            store = service.store
            conversation = store.create_conversation(question, names, web)
            for turn in turns:
                store.add_message(conversation, turn.role, turn.content)
            answer = service.ask(model, question, settings, conversation, names, web, job.cancel)
            meta["conversation_id"] = answer.conversation_id
        else:
            answer = service.ask_unsaved(model, question, settings, turns, names, web, job.cancel)
        meta.update(
            sources=[s.to_dict() for s in answer.sources],
            notices=list(answer.notices),
            web_used=answer.web_used,
        )
        job.emit(JobMeta(meta))
        hit = _pump(iter(answer), job, stops)
        answer.close()
        return _ended(answer.stats, hit)

    return work
