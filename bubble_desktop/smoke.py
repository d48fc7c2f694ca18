"""`bubble --smoke-test --model DIR [--remote-code-model DIR] [--home DIR] [--report FILE]`.

Proves a (frozen) build works end to end, offscreen, in a temporary home: opens the real main window on
the real services (as app.py builds them), chooses DIR as the model folder so the inference thread loads
it, indexes a small file into a knowledge base and searches it, asks one question through the chat pane
with that knowledge base selected and waits for the streamed answer, imports model code from a user
folder the way transformers does for ChatGLM (and, given ``--remote-code-model``, loads such a model and
asks it too), then prints a short JSON report and exits 0. Any failure prints
``smoke test failed at <stage>: <why>`` and exits 1, so a broken bundle (a module PyInstaller missed, a
Qt plugin not collected, metadata transformers cannot find) fails CI instead of a user's first start.
``--report FILE`` also writes the JSON to a file: the Windows ``bubble.exe`` is a windowed program with
no console to print to.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMOKE_QUESTION = "What colour is the smoke bubble?"
SMOKE_DOCUMENT = (
    "# Smoke test notes\n\n"
    "The smoke bubble is teal and floats above the lighthouse at Port Quillan.\n\n"
    "Unrelated filler: the quick brown fox jumps over the lazy dog.\n"
)
SMOKE_QUERY = "Which colour is the bubble above the lighthouse?"
SMOKE_MARKER = "Port Quillan"

# What ChatGLM's own code (auto_map "remote code") imports when a user loads it from a model folder: the
# frozen app must keep these importable although nothing in Bubble imports some of them itself.
REMOTE_CODE_PROBE = """
import base64, bz2, copy, ctypes, math, re, warnings
from functools import partial
import numpy as np
import sentencepiece as spm
import google.protobuf
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from torch.nn import CrossEntropyLoss, LayerNorm
from torch.nn.parameter import Parameter
from torch.nn.utils import skip_init
from transformers import PretrainedConfig, PreTrainedTokenizer
from transformers.generation.logits_process import LogitsProcessor
from transformers.generation.utils import (
    GenerationConfig,
    LogitsProcessorList,
    ModelOutput,
    StoppingCriteriaList,
)
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import PreTrainedModel
from transformers.tokenization_utils_base import BatchEncoding, EncodedInput
from transformers.utils import PaddingStrategy, logging


class BubbleProbeConfig(PretrainedConfig):
    model_type = "bubble_probe"
"""


class SmokeFailure(Exception):
    """A stage failed; the message says which and why."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bubble --smoke-test", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", required=True)
    parser.add_argument("--model", required=True, metavar="DIR", help="a (tiny) chat model folder")
    parser.add_argument(
        "--home", metavar="DIR", help="BUBBLE_HOME to use (default: a temporary folder, removed)"
    )
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument(
        "--remote-code-model",
        metavar="DIR",
        help="also load this ChatGLM-style model (its own code) and stream an answer from it",
    )
    parser.add_argument(
        "--gguf",
        metavar="FILE",
        help="also open this GGUF file (llama.cpp in its child process) and stream an answer from it",
    )
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole test")
    # anything else on the command line (Qt's own arguments) is ignored
    args, _unknown = parser.parse_known_args(argv[1:])
    return args


class SmokeRun:
    """Runs the stages in order, timing each; the first failure stops the run."""

    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.report: dict[str, Any] = {
            "ok": False,
            "frozen": bool(getattr(sys, "frozen", False)),
            "executable": sys.executable,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "home": str(home),
            "stages": {},
        }
        self.app: Any = None
        self.ctx: Any = None
        self.window: Any = None
        self.recorder: Any = None

    def stage(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        t0 = time.perf_counter()
        try:
            details = fn() or {}
        except SmokeFailure as exc:
            self._fail(name, str(exc), t0)
        except Exception as exc:  # the smoke test's boundary: name the stage and the exception
            self._fail(name, f"{type(exc).__name__}: {exc}", t0, tb=traceback.format_exc())
        self.report["stages"][name] = {"ok": True, "s": round(time.perf_counter() - t0, 3), **details}

    def _fail(self, name: str, why: str, t0: float, tb: str = "") -> None:
        self.report["stages"][name] = {"ok": False, "s": round(time.perf_counter() - t0, 3), "error": why}
        if tb:
            self.report["traceback"] = tb
        self.report["failed_stage"] = name
        raise SmokeFailure(f"smoke test failed at {name}: {why}")

    # --- stages -----------------------------------------------------------------------------------------

    def versions(self) -> dict[str, Any]:
        import torch
        import transformers

        from bubble_desktop import __version__

        return {
            "bubble": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda_available": bool(torch.cuda.is_available()),
        }

    def open_window(self) -> dict[str, Any]:
        """The real main window on the real services, built as the app builds them."""
        from PySide6.QtWidgets import QApplication

        from bubble_desktop.bootstrap import build_context, configure_interpreter
        from bubble_desktop.core.paths import Paths
        from bubble_desktop.core.settings import load_settings
        from bubble_desktop.ui.main_window import MainWindow

        configure_interpreter()  # as the app does before it creates the QApplication
        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        paths = Paths.default().ensure()
        settings, notices = load_settings(paths.settings_file)
        settings.sampling.temperature = 0.0
        settings.sampling.seed = 0
        settings.sampling.max_new_tokens = self.args.max_new_tokens
        self.ctx = build_context(paths, settings, notices)
        self.window = MainWindow(self.ctx)
        self.recorder = _make_recorder(self.window)
        self.window.show()
        self.wait(lambda: self.window.isVisible(), 10.0, "the main window to become visible")
        return {
            "window": type(self.window).__name__,
            "qt_platform": self.app.platformName(),
            "translations": _check_translations(),
        }

    def load_model(self) -> dict[str, Any]:
        """Choose the model folder as a user would; the inference thread loads it."""
        self.window.set_model_folder(self.args.model)
        rec = self.recorder
        self.wait(
            lambda: rec.model_info is not None or rec.load_failure is not None, 180.0, "the model to load"
        )
        if rec.load_failure is not None:
            raise SmokeFailure(f"{rec.load_failure.message} {rec.load_failure.hint}".strip())
        info = rec.model_info
        return {
            "model": info.name,
            "arch": info.arch,
            "device": info.device,
            "dtype": info.dtype,
            "status_bar": self.window.status.model_label.text(),
        }

    def index_and_search(self) -> dict[str, Any]:
        """Index a small file into a knowledge base with the window's own service, then search it."""
        knowledge = self.ctx.knowledge
        docs = self.home / "smoke-docs"
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "smoke-notes.md").write_text(SMOKE_DOCUMENT, encoding="utf-8")
        knowledge.create_base("smoke")
        report = knowledge.add_paths("smoke", [docs])
        if not report.ok or not report.indexed:
            raise SmokeFailure(f"indexing failed: {report}")
        hits = knowledge.search("smoke", SMOKE_QUERY)
        if not hits:
            raise SmokeFailure("the knowledge base returned no hits for a document just indexed")
        if SMOKE_MARKER not in hits[0].text:
            raise SmokeFailure(f"the top hit is not the indexed document: {hits[0].text[:120]!r}")
        return {
            "indexed": len(report.indexed),
            "chunks": report.chunks_added,
            "hits": len(hits),
            "top_score": round(hits[0].score, 4),
        }

    def stream_answer(self) -> dict[str, Any]:
        """Ask through the chat pane with the knowledge base selected; the answer streams into the window."""
        chat = self.window.chat
        chat.set_knowledge_bases(["smoke"])
        chat.set_options(["smoke"], False)
        return self._ask(SMOKE_QUESTION)

    def remote_code_model(self) -> dict[str, Any]:
        """Load a model that ships its own code (ChatGLM-style) as a user who allowed it would, and ask it."""
        folder = str(Path(self.args.remote_code_model).expanduser().resolve())
        self.ctx.consent.trust(folder)  # what the consent dialog records when the user allows the code
        self.recorder.reset()
        self.window.set_model_folder(folder)
        rec = self.recorder
        self.wait(
            lambda: rec.model_info is not None or rec.load_failure is not None, 180.0, "the model to load"
        )
        if rec.load_failure is not None:
            raise SmokeFailure(f"{rec.load_failure.message} {rec.load_failure.hint}".strip())
        info = rec.model_info
        self.window.chat.set_options([], False)
        return {
            "model": info.name,
            "arch": info.arch,
            "remote_code": info.remote_code,
            "device": info.device,
            **self._ask("Hello, who are you?"),
        }

    def gguf_model(self) -> dict[str, Any]:
        """Open a GGUF file as a user would (no conversion); llama.cpp answers from its child process."""
        path = str(Path(self.args.gguf).expanduser().resolve())
        self.recorder.reset()
        self.window.set_model_folder(path)
        rec = self.recorder
        self.wait(
            lambda: rec.model_info is not None or rec.load_failure is not None, 180.0, "the GGUF to load"
        )
        if rec.load_failure is not None:
            raise SmokeFailure(f"{rec.load_failure.message} {rec.load_failure.hint}".strip())
        info = rec.model_info
        if info.dtype != "gguf":
            raise SmokeFailure(f"{path} did not open through llama.cpp ({info.dtype})")
        from bubble_desktop.core.llm.gguf_constants import constants_file

        if constants_file() is None:  # opening a GGUF would import numpy: a GUI stall at every load
            raise SmokeFailure("gguf/constants.py is not shipped as a file (bubble.spec's datas)")
        self.window.chat.set_options([], False)
        return {
            "model": info.name,
            "arch": info.arch,
            "runs_on": info.runs_on,
            "status_bar": self.window.status.model_label.text(),
            **self._ask("Hello, how are you?"),
        }

    def _ask(self, question: str) -> dict[str, Any]:
        rec = self.recorder
        rec.reset()
        self.window.send(question)
        self.wait(lambda: rec.result is not None, 180.0, "the answer to finish")
        result = rec.result
        if result.error:
            raise SmokeFailure(f"the answer failed: {result.error} {result.hint}".strip())
        if not rec.chunks:
            raise SmokeFailure("the model streamed no text")
        stats = result.stats
        return {
            "chunks": len(rec.chunks),
            "answer": "".join(rec.chunks)[:80],
            "sources": len(rec.meta.sources) if rec.meta is not None else 0,
            "saved_message_id": result.message_id,
            "completion_tokens": getattr(stats, "completion_tokens", None),
            "tokens_per_s": getattr(stats, "tokens_per_s", None),
        }

    def remote_code(self) -> dict[str, Any]:
        """Import model code from a user folder the way transformers does for auto_map (ChatGLM) models."""
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        folder = self.home / "remote-code-probe"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "configuration_bubble_probe.py").write_text(REMOTE_CODE_PROBE, encoding="utf-8")
        (folder / "config.json").write_text(
            json.dumps(
                {
                    "model_type": "bubble_probe",
                    "auto_map": {"AutoConfig": "configuration_bubble_probe.BubbleProbeConfig"},
                }
            ),
            encoding="utf-8",
        )
        cls = get_class_from_dynamic_module("configuration_bubble_probe.BubbleProbeConfig", str(folder))
        return {"class": f"{cls.__module__}.{cls.__name__}"}

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Run the Qt event loop until ``condition`` holds; fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SmokeFailure(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.app.processEvents()
            time.sleep(0.005)  # the work happens on worker threads; do not spin a core

    def close(self) -> None:
        """Release everything (always runs): threads stopped, stores closed (an embedded store stays
        locked)."""
        if self.window is not None:
            _quietly(self.window.close)  # closeEvent -> shutdown(): stops the inference thread
            _quietly(self.window.shutdown)
            _quietly(self.app.processEvents)
        if self.ctx is not None:
            _quietly(getattr(self.ctx.knowledge, "close", None))
            _quietly(getattr(self.ctx.store, "close", None))


def _check_translations() -> list[str]:
    """The Chinese UI needs our .qm and Qt's own: both must be in the bundle and load."""
    from PySide6.QtCore import QLibraryInfo, QTranslator

    from bubble_desktop.ui.resources import resource_path

    ours = resource_path("i18n", "bubble_zh_CN.qm")
    if not QTranslator().load(str(ours)):
        raise SmokeFailure(f"the Chinese translation {ours} is missing or unreadable")
    qt_dir = QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)
    if not QTranslator().load("qtbase_zh_CN", qt_dir):
        raise SmokeFailure(f"Qt's own Chinese translation (qtbase_zh_CN.qm) is not in {qt_dir}")
    return [ours.name, "qtbase_zh_CN.qm"]


def _quietly(fn: Callable[[], Any] | None) -> None:
    if fn is None:
        return
    try:
        fn()
    except Exception:
        traceback.print_exc()


def _make_recorder(window: Any) -> Any:
    """A GUI-thread QObject whose slots record what the window's controller reports."""
    from PySide6.QtCore import QObject, Slot

    class SmokeRecorder(QObject):
        def __init__(self) -> None:
            super().__init__(window)
            self.reset()

        def reset(self) -> None:
            self.model_info: Any = None
            self.load_failure: Any = None
            self.meta: Any = None
            self.chunks: list[str] = []
            self.result: Any = None

        @Slot(object)
        def _on_window_model_ready(self, info: Any) -> None:
            self.model_info = info

        @Slot(object, object)
        def _on_inference_model_load_failed(self, failure: Any, _request: Any) -> None:
            self.load_failure = failure

        @Slot(int, object)
        def _on_inference_answer_started(self, _rid: int, meta: Any) -> None:
            self.meta = meta

        @Slot(int, str)
        def _on_inference_text_arrived(self, _rid: int, text: str) -> None:
            self.chunks.append(text)

        @Slot(int, object)
        def _on_inference_answer_finished(self, _rid: int, result: Any) -> None:
            self.result = result

    rec = SmokeRecorder()
    window.model_ready.connect(rec._on_window_model_ready)
    window.inference.model_load_failed.connect(rec._on_inference_model_load_failed)
    window.inference.answer_started.connect(rec._on_inference_answer_started)
    window.inference.text_arrived.connect(rec._on_inference_text_arrived)
    window.inference.answer_finished.connect(rec._on_inference_answer_finished)
    return rec


def main(argv: list[str]) -> int:
    args = _parse(argv)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    temp_home = None
    if args.home:
        home = Path(args.home).expanduser().resolve()
    else:
        temp_home = Path(tempfile.mkdtemp(prefix="bubble-smoke-"))
        home = temp_home
    os.environ["BUBBLE_HOME"] = str(home)
    # transformers copies remote code into its modules cache: keep the probe out of the user's cache
    os.environ["HF_MODULES_CACHE"] = str(home / "hf-modules")
    run = SmokeRun(args, home)
    t0 = time.perf_counter()
    code = 1
    watchdog = threading.Timer(args.timeout, _timeout, args=(args.timeout,))
    watchdog.daemon = True
    watchdog.start()
    try:
        run.stage("versions", run.versions)
        run.stage("window", run.open_window)
        run.stage("model", run.load_model)
        run.stage("knowledge", run.index_and_search)
        run.stage("answer", run.stream_answer)
        run.stage("remote_code", run.remote_code)
        if args.remote_code_model:
            run.stage("remote_code_model", run.remote_code_model)
        if args.gguf:
            run.stage("gguf_model", run.gguf_model)
        run.report["ok"] = True
        code = 0
    except SmokeFailure as exc:
        if sys.stderr is not None:  # None in a windowed Windows exe
            print(str(exc), file=sys.stderr)
    finally:
        watchdog.cancel()
        run.close()
        run.report["total_s"] = round(time.perf_counter() - t0, 3)
        text = json.dumps(run.report, indent=2, ensure_ascii=True, default=str)  # any console encoding
        if sys.stdout is not None:  # None in a windowed Windows exe
            print(text)
        if args.report:
            Path(args.report).write_text(text + "\n", encoding="utf-8")
        if temp_home is not None:
            shutil.rmtree(temp_home, ignore_errors=True)
    return code


def _timeout(seconds: float) -> None:
    if sys.stderr is not None:
        print(f"smoke test failed: it did not finish within {seconds:.0f} s", file=sys.stderr)
    os._exit(3)
