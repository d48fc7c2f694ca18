"""The OpenAI-compatible API server end to end: the official ``openai`` client against a real
uvicorn server on 127.0.0.1 (a free port, on a thread), over real models (the tiny transformers
model, SmolLM2 GGUF through llama.cpp), real MiniLM and a real Qdrant Edge knowledge base."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from bubble_desktop.cli import main
from bubble_desktop.core.api.app import ApiConfig
from bubble_desktop.core.api.owner import InferenceOwner
from bubble_desktop.core.api.server import ApiServer, ApiServerError
from bubble_desktop.core.chat.service import ChatService
from bubble_desktop.core.chat.store import ConversationStore
from bubble_desktop.core.kb.service import KnowledgeService
from bubble_desktop.core.llm.base import ChatMessage, ChatModel, LoadRequest
from bubble_desktop.core.llm.loader import load_model
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import KnowledgeSettings, SamplingSettings
from tests.e2e.test_kb_service import shared_embedder

FACT_DOC = (
    "# The Vellamo Prize\n\n"
    "The Vellamo Prize for lighthouse engineering was won in 2019 by Ottilie Brask, "
    "for her design of the floating beacon at Korvenholm.\n"
)
QUESTION = "Who won the Vellamo Prize in 2019?"


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path) -> Iterator[ChatModel]:
    model = load_model(LoadRequest(path=str(tiny_model_dir), device="cpu"))
    yield model
    model.unload()


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> Iterator[ChatModel]:
    model = load_model(LoadRequest(path=str(smollm2_gguf), device="cpu"))
    yield model
    model.unload()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        pause.wait(0.01)


@contextlib.contextmanager
def serving(
    model: ChatModel,
    knowledge: KnowledgeService | None = None,
    max_queue: int = 16,
    **config: Any,
) -> Iterator[tuple[ApiServer, openai.OpenAI]]:
    """A real server on a free port over an already-loaded model (shared, as the GUI shares its own)."""
    owner = InferenceOwner(model, owns_model=False, max_queue=max_queue)
    chat = ChatService(Paths.default().ensure(), knowledge) if knowledge is not None else None
    cfg = ApiConfig(port=0, max_queue=max_queue, **config)
    server = ApiServer(owner, cfg, knowledge=knowledge, chat_service=chat, owns_owner=True)
    server.start()
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.port}/v1",
        api_key=cfg.api_key or "none",
        max_retries=0,
        timeout=120,
    )
    try:
        yield server, client
    finally:
        client.close()
        server.stop()
        if chat is not None:
            chat.close()
    assert model.info is not None  # the shared model stays loaded: stop() never unloads what it was given


def chat(client: openai.OpenAI, model: str, question: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, **kw
    )


def stream_text(client: openai.OpenAI, model: str, question: str, **kw: Any) -> tuple[str, list[Any]]:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            **kw,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def direct_text(model: ChatModel, question: str, max_tokens: int) -> str:
    """What the engine says without the server, with the same system prompt and sampling."""
    sampling = SamplingSettings(temperature=0.0, max_new_tokens=max_tokens)
    messages = [ChatMessage("system", sampling.system_prompt), ChatMessage("user", question)]
    return model.stream(messages, sampling).run()


# --- chat ----------------------------------------------------------------------------------------


def test_tiny_model_chat_stream_and_non_stream(tiny_model: ChatModel) -> None:
    with serving(tiny_model) as (server, client):
        ids = [m.id for m in client.models.list().data]
        assert ids == [tiny_model.info.name]
        full = chat(client, tiny_model.info.name, "Hello there", max_tokens=12, seed=7)
        text = full.choices[0].message.content
        assert text and full.choices[0].finish_reason in ("stop", "length")
        assert full.usage.prompt_tokens > 0 and 0 < full.usage.completion_tokens <= 12
        assert full.usage.total_tokens == full.usage.prompt_tokens + full.usage.completion_tokens
        streamed, chunks = stream_text(client, tiny_model.info.name, "Hello there", max_tokens=12)
        assert streamed == text
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
        assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # include_usage chunk
        assert streamed == direct_text(tiny_model, "Hello there", 12)


@pytest.mark.slow
def test_smollm2_streamed_equals_non_streamed_and_ask(
    smollm2: ChatModel, smollm2_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "What is the capital of France?"
    with serving(smollm2) as (server, client):
        name = smollm2.info.name
        full = chat(client, name, question, max_tokens=40)
        text = full.choices[0].message.content
        assert "Paris" in text
        streamed, chunks = stream_text(client, name, question, max_tokens=40)
        assert streamed == text
        # really streamed: a longer answer arrives in many pieces (llama.cpp's child sends what it
        # decoded every 20 ms, ~2 tokens at this speed, and the server writes what has arrived)
        long_text, long_chunks = stream_text(client, name, "Tell me a long story about a fox.", max_tokens=64)
        pieces = [c for c in long_chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 10 and "".join(c.choices[0].delta.content for c in pieces) == long_text
        # a stop sequence cuts the answer before it and ends the generation
        word = text.split()[2]
        cut = chat(client, name, question, max_tokens=40, stop=[word])
        assert cut.choices[0].message.content == text[: text.index(word)]
        assert cut.choices[0].finish_reason == "stop"
        cut_stream, _ = stream_text(client, name, question, max_tokens=40, stop=word)
        assert cut_stream == cut.choices[0].message.content
    capsys.readouterr()
    assert (
        main(
            [
                "ask",
                question,
                "--model",
                str(smollm2_gguf),
                "--device",
                "cpu",
                "--temperature",
                "0",
                "--max-new-tokens",
                "40",
                "--json",
            ]
        )
        == 0
    )
    asked = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert asked["answer"] == text


# --- embeddings ----------------------------------------------------------------------------------


def test_embeddings_equal_the_kb_embedder(tiny_model: ChatModel, minilm_dir: Path) -> None:
    embedder = shared_embedder()
    knowledge = KnowledgeService(Paths.default(), KnowledgeSettings(), embedder=embedder)
    texts = ["Paris is the capital of France.", "长城是中国古代的军事防御工程。", "hello"]
    try:
        with serving(tiny_model, knowledge) as (server, client):
            assert embedder.name in [m.id for m in client.models.list().data]
            expected = embedder.embed(texts)
            got = client.embeddings.create(model=embedder.name, input=texts)  # base64 on the wire
            assert [d.index for d in got.data] == [0, 1, 2]
            np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected, atol=1e-6)
            floats = client.embeddings.create(model=embedder.name, input=texts[0], encoding_format="float")
            np.testing.assert_allclose(np.array(floats.data[0].embedding), expected[0], atol=1e-6)
            with pytest.raises(openai.NotFoundError):
                client.embeddings.create(model="text-embedding-3-small", input="x")
    finally:
        knowledge.close()


# --- knowledge-grounded answers ------------------------------------------------------------------


@pytest.mark.slow
def test_kb_grounded_answer_carries_the_fact_and_its_source(smollm2: ChatModel, tmp_path: Path) -> None:
    doc = tmp_path / "vellamo.md"
    doc.write_text(FACT_DOC, encoding="utf-8")
    knowledge = KnowledgeService(Paths.default().ensure(), KnowledgeSettings(), embedder=shared_embedder())
    try:
        knowledge.create_base("facts")
        report = knowledge.add_paths("facts", [doc])
        assert not report.failed
        with serving(smollm2, knowledge) as (server, client):
            assert "bubble/kb:facts" in [m.id for m in client.models.list().data]
            full = chat(client, "bubble/kb:facts", QUESTION, max_tokens=40)
            text = full.choices[0].message.content
            assert "Ottilie Brask" in text, text
            sources = full.model_extra["bubble"]["sources"]
            assert sources[0]["index"] == 1 and sources[0]["path"] == str(doc)
            assert "Korvenholm" in sources[0]["text"]
            # the extension field on the plain model id does the same; sources come in the first chunk
            chunks = list(
                client.chat.completions.create(
                    model=smollm2.info.name,
                    messages=[{"role": "user", "content": QUESTION}],
                    temperature=0,
                    max_tokens=40,
                    stream=True,
                    extra_body={"bubble": {"knowledge_bases": ["facts"], "web": False}},
                )
            )
            first = chunks[0].model_extra["bubble"]["sources"]
            assert first[0]["path"] == str(doc)
            assert all("bubble" not in (c.model_extra or {}) for c in chunks[1:])
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
            without = chat(client, smollm2.info.name, QUESTION, max_tokens=40).choices[0].message.content
            assert "Brask" not in without
            with pytest.raises(openai.NotFoundError):
                chat(client, "bubble/kb:nope", QUESTION, max_tokens=5)
    finally:
        knowledge.close()
    store = ConversationStore(Paths.default().chats_db)
    try:
        assert store.list_conversations() == []  # API answers are saved nowhere
    finally:
        store.close()


# --- one model, many clients ---------------------------------------------------------------------


@pytest.mark.slow
def test_eight_concurrent_streams_complete_unmixed(smollm2: ChatModel) -> None:
    questions = [f"Write the number {n} in words, then say hello." for n in range(1, 9)]
    with serving(smollm2) as (server, client):
        name = smollm2.info.name
        expected = [chat(client, name, q, max_tokens=24).choices[0].message.content for q in questions]
        assert len(set(expected)) > 4  # different questions, different answers: mixing would show
        got: list[str | None] = [None] * 8
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def run(i: int) -> None:
            try:
                barrier.wait()
                got[i] = stream_text(client, name, questions[i], max_tokens=24)[0]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert got == expected


def test_client_dropping_mid_stream_frees_the_model(tiny_model: ChatModel) -> None:
    with serving(tiny_model) as (server, client):
        name = tiny_model.info.name
        long_body = {
            "model": name,
            "messages": [{"role": "user", "content": "Go on forever"}],
            "temperature": 0,
            "max_tokens": 1900,
            "stream": True,
        }
        t0 = time.perf_counter()
        ref = chat(client, name, "Go on forever", max_tokens=600)
        ref_s = time.perf_counter() - t0
        # greedy on random weights never says EOS this early: the dropped answer has >= 597 tokens to go
        assert ref.usage.completion_tokens == 600
        with httpx.Client(timeout=60) as http:
            with http.stream("POST", f"{server.url}/chat/completions", json=long_body) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                got = 0
                for line in lines:
                    if line.startswith("data: {"):
                        got += 1
                        if got == 3:
                            break
            # leaving the block closes the connection mid-answer
        t1 = time.perf_counter()
        nxt = chat(client, name, "Hi", max_tokens=4)
        waited = time.perf_counter() - t1
        assert nxt.choices[0].message.content is not None
        assert waited < ref_s / 3, (waited, ref_s)  # not queued behind the rest of the dropped answer
        wait_until(lambda: server.owner.queued == 0 and server.owner._current is None, 10)


# --- errors and security -------------------------------------------------------------------------


def test_error_codes(tiny_model: ChatModel) -> None:
    with serving(tiny_model, max_body_bytes=4096, max_tokens=64) as (server, client):
        name = tiny_model.info.name
        url = f"{server.url}/chat/completions"
        msg = [{"role": "user", "content": "hi"}]
        with httpx.Client(timeout=30) as http:
            r = http.post(url, content=b"{not json", headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
            r = http.post(
                url,
                content=json.dumps({"model": name, "messages": [{"role": "user", "content": "x" * 5000}]}),
            )
            assert r.status_code == 413
            r = http.get(f"{server.url}/nothing-here")
            assert r.status_code == 404 and "error" in r.json()
            r = http.options(
                url, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
            )
            assert "access-control-allow-origin" not in r.headers  # CORS is off unless configured
        with pytest.raises(openai.NotFoundError) as nf:
            client.chat.completions.create(model="gpt-4o", messages=msg)
        assert nf.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model=name, messages=msg, temperature=5)
        assert bad.value.body["param"] == "temperature"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=name, messages=msg, max_tokens=65)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=name, messages=[])


def test_queue_full_is_503(tiny_model: ChatModel) -> None:
    with serving(tiny_model, max_queue=1) as (server, client):
        name = tiny_model.info.name
        started = threading.Event()
        results: list[Any] = []

        enough = threading.Event()

        def long_stream() -> None:
            stream = client.chat.completions.create(
                model=name,
                messages=[{"role": "user", "content": "go"}],
                max_tokens=1500,
                stream=True,
                temperature=0,
            )
            for _ in stream:
                started.set()
                if enough.is_set():
                    break
            stream.close()  # drops the connection: the next job gets the model
            results.append("long done")

        def waiting() -> None:
            results.append(chat(client, name, "hi", max_tokens=2).choices[0].message.content)

        a = threading.Thread(target=long_stream)
        a.start()
        assert started.wait(60)
        b = threading.Thread(target=waiting)
        b.start()
        wait_until(lambda: server.owner.queued == 1)
        with pytest.raises(openai.InternalServerError) as full:
            chat(client, name, "one too many", max_tokens=2)
        assert full.value.status_code == 503 and full.value.body["code"] == "queue_full"
        enough.set()
        a.join(120)
        b.join(120)
        assert len(results) == 2


def test_api_key_on_a_non_loopback_bind(tiny_model: ChatModel) -> None:
    with serving(tiny_model, host="0.0.0.0", api_key="s3cret-key") as (server, client):
        name = tiny_model.info.name
        assert chat(client, name, "hi", max_tokens=2).choices[0].message.content is not None
        base = f"http://127.0.0.1:{server.port}/v1"
        for key in ("", "wrong-key"):
            bad = openai.OpenAI(
                base_url=base,
                api_key=key or "unused",
                max_retries=0,
                default_headers={} if key else {"Authorization": ""},
            )
            with pytest.raises(openai.AuthenticationError) as denied:
                bad.models.list()
            assert denied.value.status_code == 401
            bad.close()
        r = httpx.get(f"{base}/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_non_loopback_bind_without_key_is_refused(
    tiny_model: ChatModel, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = InferenceOwner(tiny_model, owns_model=False)
    with pytest.raises(ApiServerError, match="API key"):
        ApiServer(owner, ApiConfig(host="0.0.0.0", port=0)).start()
    assert not owner.running  # refused before anything started
    capsys.readouterr()
    assert main(["serve", "--host", "0.0.0.0", "--model", "/nonexistent"]) == 2  # refused before loading
    err = capsys.readouterr().err
    assert "Refusing to serve on 0.0.0.0" in err and "--api-key" in err


def test_serve_command_end_to_end(tiny_model_dir: Path, bubble_home: Path) -> None:
    """`bubble-cli serve` as users run it: prints its URL once ready, answers, exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    assert main(["kb", "create", "notes"]) == 0  # in this test's BUBBLE_HOME; served from another home
    kb_dir = Paths.default().knowledge_dir
    env = {**os.environ, "BUBBLE_HOME": str(bubble_home.parent / "other-home")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "serve",
            "--port",
            "0",
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--kb-dir",
            str(kb_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), (
            proc.stderr.read() if proc.stderr else ""
        )
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        ids = [m.id for m in client.models.list().data]
        assert ids == [tiny_model_dir.name, "bubble/kb:notes", "all-MiniLM-L6-v2"]
        assert chat(client, ids[0], "hi", max_tokens=3).choices[0].message.content is not None
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_model_swapped_out_and_back_as_the_gui_does(tiny_model: ChatModel) -> None:
    """The app unloads or switches its model under a running server: 503 meanwhile, then it answers."""
    with serving(tiny_model) as (server, client):
        name = tiny_model.info.name
        server.owner.set_model(None)
        with pytest.raises(openai.InternalServerError) as none:
            chat(client, name, "hi", max_tokens=2)
        assert none.value.status_code == 503 and none.value.body["code"] == "model_not_loaded"
        server.owner.set_model(tiny_model)
        assert chat(client, name, "hi", max_tokens=2).choices[0].message.content is not None


def test_saved_only_when_asked(tiny_model: ChatModel) -> None:
    """`"bubble": {"save": true}` keeps the exchange (earlier turns included) as a conversation."""
    knowledge = KnowledgeService(Paths.default().ensure(), KnowledgeSettings(), embedder=shared_embedder())
    history = [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
    ]
    try:
        with serving(tiny_model, knowledge) as (server, client):
            name = tiny_model.info.name
            plain = client.chat.completions.create(model=name, messages=history, max_tokens=4, temperature=0)
            assert "conversation_id" not in (plain.model_extra or {}).get("bubble", {})
            kept = client.chat.completions.create(
                model=name,
                messages=history,
                max_tokens=4,
                temperature=0,
                extra_body={"bubble": {"save": True}},
            )
            conversation_id = kept.model_extra["bubble"]["conversation_id"]
    finally:
        knowledge.close()
    store = ConversationStore(Paths.default().chats_db)
    try:
        assert [c.id for c in store.list_conversations()] == [conversation_id]
        messages = store.messages(conversation_id)
        assert [(m.role, m.text) for m in messages[:3]] == [(h["role"], h["content"]) for h in history]
        assert messages[3].role == "assistant" and messages[3].text == kept.choices[0].message.content
        assert messages[3].status in ("complete", "stopped")
    finally:
        store.close()
