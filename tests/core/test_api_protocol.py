"""The API server's pure parts: request validation, stop sequences, and the inference owner's queue."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubble_desktop.core.api.owner import (
    InferenceOwner,
    JobEvent,
    JobFinished,
    JobText,
    OwnerStoppedError,
    QueueFullError,
)
from bubble_desktop.core.api.protocol import (
    ApiError,
    Limits,
    StopScanner,
    model_messages,
    parse_chat_request,
    parse_embedding_request,
)
from bubble_desktop.core.llm.base import ChatMessage, Generation, GenerationStats, ModelInfo
from bubble_desktop.core.settings import SamplingSettings

BASE = SamplingSettings()
USER = [{"role": "user", "content": "hi"}]


def parse(**body: object) -> object:
    return parse_chat_request({"model": "m", "messages": USER, **body}, BASE, Limits(max_tokens=100))


def test_defaults_come_from_the_settings_and_fields_override() -> None:
    req = parse()
    assert req.sampling.temperature == BASE.temperature and req.sampling.max_new_tokens == 100
    req = parse(temperature=0, top_p=0.5, max_tokens=7, seed=2**40 + 3, stop="END", stream=True)
    s = req.sampling
    assert (s.temperature, s.top_p, s.max_new_tokens, s.seed) == (0.0, 0.5, 7, (2**40 + 3) % 2**31)
    assert req.stop == ("END",) and req.stream


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 101}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stop": [1]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "a"}]}, "messages[0].role"),
        ({"model": ""}, "model"),
        ({"bubble": {"knowledge_bases": "notes", "web": "yes"}}, "bubble.web"),
    ],
)
def test_bad_fields_are_400_with_the_param(body: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as err:
        parse(**body)
    assert err.value.status == 400 and err.value.param == param
    assert set(err.value.body()["error"]) == {"message", "type", "param", "code"}


def test_system_messages_and_the_configured_system_prompt() -> None:
    req = parse(messages=[{"role": "developer", "content": "Be brief."}, *USER])
    assert model_messages(req) == [ChatMessage("system", "Be brief."), ChatMessage("user", "hi")]
    plain = parse()
    assert model_messages(plain)[0] == ChatMessage("system", BASE.system_prompt)
    parts = parse(
        messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert parts.question == "ab"


def test_knowledge_bases_from_the_model_id_and_the_extension_field() -> None:
    assert parse(model="bubble/kb:notes,work").kb_names == ("notes", "work")
    req = parse(model="bubble/kb:notes", bubble={"knowledge_bases": ["work", "notes"], "web": True})
    assert req.kb_names == ("notes", "work") and req.web and req.grounded
    assert not parse().grounded
    with pytest.raises(ApiError) as err:
        parse(model="bubble/kb:")
    assert err.value.status == 404


def test_embedding_requests() -> None:
    assert parse_embedding_request({"model": "e", "input": "x"}).inputs == ("x",)
    assert parse_embedding_request({"model": "e", "input": ["x", "y"], "encoding_format": "base64"}).base64
    for bad in ({"model": "e", "input": [1, 2]}, {"model": "e", "input": []}, {"input": "x"}):
        with pytest.raises(ApiError):
            parse_embedding_request(bad)


@given(
    st.text(alphabet="abc XY", max_size=40),
    st.text(alphabet="abc XY", min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=6), max_size=20),
)
def test_stop_scanner_equals_cutting_the_whole_text(text: str, stop: str, cuts: list[int]) -> None:
    pieces, rest = [], text
    for n in cuts:
        pieces.append(rest[:n])
        rest = rest[n:]
    pieces.append(rest)
    scanner = StopScanner([stop])
    out = []
    for piece in pieces:
        out.append(scanner.feed(piece))
        if scanner.hit:
            break
    out.append(scanner.flush())
    i = text.find(stop)
    assert "".join(out) == (text[:i] if i >= 0 else text)
    assert scanner.hit == (i >= 0)


# --- the owner, with a test double for the model ------------------------------------------------


class ScriptedModel:
    """Yields the words of the last user message one by one; waits on ``gate`` before each word."""

    def __init__(self) -> None:
        self.info = ModelInfo("scripted", "", "test", "cpu", "none", 1024)
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        sampling: SamplingSettings,
        cancel: threading.Event | None = None,
    ) -> Generation:
        cancel = cancel or threading.Event()
        words = messages[-1].content.split()
        gen: Generation

        def chunks() -> Iterator[str]:
            n = 0
            reason = "stop"
            self.started.set()
            for w in words:
                while not self.gate.wait(0.01):
                    if cancel.is_set():
                        break
                if cancel.is_set():
                    reason = "cancelled"
                    break
                n += 1
                yield w + " "
            gen.stats = GenerationStats(1, n, finish_reason=reason)  # type: ignore[arg-type]

        gen = Generation(chunks())
        return gen

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return 1

    def unload(self) -> None:
        pass


def test_owner_runs_jobs_in_order_refuses_when_full_and_skips_cancelled() -> None:
    from bubble_desktop.core.api.jobs import chat_work

    model = ScriptedModel()
    owner = InferenceOwner(model, max_queue=2)
    owner.start()
    try:
        order: list[str] = []
        model.gate.clear()
        sinks = []
        jobs = []
        for text in ("one", "two", "three"):
            done = threading.Event()

            def sink(e: JobEvent, text: str = text, done: threading.Event = done) -> None:
                if isinstance(e, JobText):
                    order.append(text)
                if isinstance(e, JobFinished):
                    done.set()

            sinks.append(done)
            jobs.append(owner.submit(chat_work([ChatMessage("user", text)], BASE), sink))
            if text == "one":
                assert model.started.wait(5)  # "one" holds the model; two and three wait in the queue
        with pytest.raises(QueueFullError):
            owner.submit(chat_work([ChatMessage("user", "four")], BASE), lambda e: None)
        jobs[1].cancel.set()  # a client that went away while queued: skipped, never run
        model.gate.set()
        for d in sinks:
            assert d.wait(5)
        assert order == ["one", "three"]
    finally:
        owner.stop()
    with pytest.raises(OwnerStoppedError):
        owner.submit(chat_work([ChatMessage("user", "x")], BASE), lambda e: None)


def test_owner_stop_cancels_the_running_job_and_keeps_a_shared_model() -> None:
    from bubble_desktop.core.api.jobs import chat_work

    model = ScriptedModel()
    owner = InferenceOwner(model, owns_model=False)
    owner.start()
    model.gate.clear()
    finished: list[JobFinished] = []
    done = threading.Event()

    def sink(e: JobEvent) -> None:
        if isinstance(e, JobFinished):
            finished.append(e)
            done.set()

    owner.submit(chat_work([ChatMessage("user", "a b c")], BASE), sink)
    assert model.started.wait(5)
    owner.stop()
    assert done.wait(5) and finished[0].stats.finish_reason == "cancelled"
    assert owner.model is model and not owner.running


def test_a_shared_lock_makes_api_jobs_wait_for_the_app_and_skips_those_cancelled_meanwhile() -> None:
    from bubble_desktop.core.api.jobs import chat_work

    model = ScriptedModel()
    lock = threading.Lock()
    owner = InferenceOwner(model, owns_model=False, model_lock=lock)
    owner.start()
    try:
        texts: list[str] = []
        done = [threading.Event(), threading.Event()]

        def sink(i: int) -> Callable[[JobEvent], None]:
            def on(e: JobEvent) -> None:
                if isinstance(e, JobText):
                    texts.append(e.text)
                if isinstance(e, JobFinished):
                    done[i].set()

            return on

        with lock:  # the app's own answer is running
            gone = owner.submit(chat_work([ChatMessage("user", "gone")], BASE), sink(0))
            owner.submit(chat_work([ChatMessage("user", "kept")], BASE), sink(1))
            gone.cancel.set()  # its client left while the app had the model
        assert done[0].wait(5) and done[1].wait(5)
        assert texts == ["kept "]
    finally:
        owner.stop()
