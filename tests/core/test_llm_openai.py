"""The OpenAI-compatible endpoint backend against a tiny SSE server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bubble_desktop.core.llm.base import ChatMessage, ChatModel
from bubble_desktop.core.llm.loader import from_settings, load_model
from bubble_desktop.core.llm.openai_backend import OpenAIChatModel
from bubble_desktop.core.settings import ModelSettings, SamplingSettings

WORDS = ["Paris", " is", " the", " capital", " of", " France", "."]


class Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model exploded")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = WORDS * (50 if body["model"] == "long" else 1)
        try:
            for i, w in enumerate(words[: body["max_tokens"]]):
                last = i == min(len(words), body["max_tokens"]) - 1
                reason = ("length" if body["max_tokens"] < len(words) else "stop") if last else None
                event = {"choices": [{"delta": {"content": w}, "finish_reason": reason}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            usage = {
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": min(len(words), body["max_tokens"])},
            }
            self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="sse-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


Q = [ChatMessage("system", "Be brief."), ChatMessage("user", "Capital of France?")]


def test_streams_chunks_and_usage(server: str) -> None:
    model = OpenAIChatModel(server, "m", api_key="sk-test")
    assert isinstance(model, ChatModel)
    gen = model.stream(Q, SamplingSettings(temperature=0.0, max_new_tokens=50, seed=5))
    assert list(gen) == WORDS
    assert gen.text == "Paris is the capital of France."
    assert gen.stats is not None
    assert (gen.stats.prompt_tokens, gen.stats.completion_tokens, gen.stats.finish_reason) == (11, 7, "stop")
    req = Handler.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert req["body"]["temperature"] == 0.0 and req["body"]["seed"] == 5 and req["body"]["stream"] is True


def test_length_finish(server: str) -> None:
    gen = OpenAIChatModel(server, "m").stream(Q, SamplingSettings(max_new_tokens=3))
    assert gen.run() == "Paris is the"
    assert gen.stats is not None and gen.stats.finish_reason == "length"


def test_cancel_keeps_partial_text(server: str) -> None:
    cancel = threading.Event()
    gen = OpenAIChatModel(server, "long").stream(Q, SamplingSettings(max_new_tokens=300), cancel)
    for i, _ in enumerate(gen):
        if i == 2:
            cancel.set()
    assert gen.text == "Paris is the"
    assert gen.stats is not None and gen.stats.finish_reason == "cancelled"


def test_http_error_is_a_finish_with_message(server: str) -> None:
    gen = OpenAIChatModel(server, "broken").stream(Q, SamplingSettings())
    assert gen.run() == ""
    assert gen.stats is not None and gen.stats.finish_reason == "error"
    assert "500" in (gen.stats.error or "")


def test_unreachable_server() -> None:
    gen = OpenAIChatModel("http://127.0.0.1:9/v1", "m", timeout_s=2).stream(Q, SamplingSettings())
    gen.run()
    assert gen.stats is not None and gen.stats.finish_reason == "error"
    assert "Could not reach" in (gen.stats.error or "")


def test_loaded_through_settings(server: str) -> None:
    s = ModelSettings(backend="openai", endpoint_url=server, endpoint_model="m")
    model = load_model(from_settings(s))
    assert isinstance(model, OpenAIChatModel) and model.info.device == "remote"
    assert model.stream(Q, SamplingSettings()).run().startswith("Paris")
